"""A thousand steps of a tiny DPO run with evaluation, logging, samples, the doctor and checkpoint rotation, measured
at every step; run by tests/trainer/test_long_run.py in a subprocess of its own (so the memory it measures is the
run's alone), or by hand:

    python tests/long_run.py OUTPUT_DIR [STEPS]    # writes OUTPUT_DIR/measures.json
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import psutil
from tiny import build_model, build_tokenizer, preference_rows
from transformers import TrainerCallback

from hf_dpo import DPOTrainer, DPOTrainingArguments


class Measures(TrainerCallback):
    """At the end of each step: resident memory, open files, the metric windows' sizes, the doctor's histories,
    live Python objects (every 50 steps: counting them is slow), the seconds since the last step ended. Kept as
    columns of numbers, so measuring adds no Python container per step to the objects it counts."""

    NAMES = ("step", "rss", "fds", "seconds", "objects", "window_modes", "window_values", "chosen_logps", "lengths")

    def __init__(self):
        self.process, self.last, self.trainer = psutil.Process(), None, None
        self.columns = {name: [] for name in self.NAMES}

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        windows = self.trainer._windows._totals  # the running sums of the metric windows, per mode
        doctor = next(callback for callback in self.trainer.callback_handler.callbacks if hasattr(callback, "fired"))
        values = (
            state.global_step,
            self.process.memory_info().rss,
            self.process.num_fds(),
            -1.0 if self.last is None else now - self.last,
            len(gc.get_objects()) if state.global_step % 50 == 0 else -1,
            len(windows),
            sum(totals.numel() for totals in windows.values()),
            len(doctor._chosen_logps),
            len(doctor._sample_lengths),
        )
        for name, value in zip(self.NAMES, values):
            self.columns[name].append(value)
        self.last = time.perf_counter()  # the measuring itself is not the step's time

    def rows(self) -> list[dict]:
        return [dict(zip(self.NAMES, values)) for values in zip(*self.columns.values())]


def main() -> None:
    output_dir = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    tokenizer = build_tokenizer()
    args = DPOTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=2,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        max_steps=steps,
        logging_steps=10,
        eval_strategy="steps",
        eval_steps=100,
        save_strategy="steps",
        save_steps=100,
        save_total_limit=2,
        generate_samples=2,
        samples_max_new_tokens=8,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    measures = Measures()
    trainer = DPOTrainer(
        build_model(tokenizer),
        args=args,
        train_dataset=preference_rows(64),
        eval_dataset=preference_rows(8),
        processing_class=tokenizer,
        callbacks=[measures],
    )
    measures.trainer = trainer
    trainer.train()
    last_state = Path(sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))[-1])
    report = {
        "rows": measures.rows(),
        "metric_columns": len(trainer._windows.spec.columns),
        "log_history": len(trainer.state.log_history),
        "trainer_state_bytes": (last_state / "trainer_state.json").stat().st_size,
        "checkpoints": sorted(path.name for path in output_dir.glob("checkpoint-*")),
        "callbacks": len(trainer.callback_handler.callbacks),
    }
    (output_dir / "measures.json").write_text(json.dumps(report))
    print("MEASURED", output_dir / "measures.json", flush=True)


if __name__ == "__main__":
    main()
