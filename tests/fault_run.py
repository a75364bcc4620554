"""A training run that meets a fault at a named moment, run in a subprocess by tests/trainer/test_faults.py.

    python tests/fault_run.py OUTPUT_DIR kill POINT        # pauses at POINT (prints "AT POINT") for the test's SIGKILL
    python tests/fault_run.py OUTPUT_DIR interrupt SAVE    # waits mid-step 4 (prints "MID-STEP") for the test's SIGINT
    python tests/fault_run.py OUTPUT_DIR interrupt steps-twice  # ... for two

Kill points, all in the save of checkpoint-4 but the last: ``weights`` (model.safetensors written, nothing else),
``optimizer`` (optimizer and scheduler written too), ``state`` (half of trainer_state.json written) and
``rotation`` (checkpoint-6 complete, the rotation of ``save_total_limit=2`` halfway through deleting checkpoint-2).
The test builds the same run in-process with :func:`fault_trainer` to resume it and to run it uninterrupted.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_model, build_tokenizer, preference_rows

from hf_dpo import DPOTrainer, DPOTrainingArguments

MAX_STEPS = 8


def fault_trainer(output_dir: str | Path, **overrides) -> DPOTrainer:
    """Eight logged steps of a tiny Llama, a checkpoint every 2 steps, at most 2 kept."""
    values = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-2,
        "max_steps": MAX_STEPS,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 2,
        "save_total_limit": 2,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    tokenizer = build_tokenizer()
    args = DPOTrainingArguments(**{**values, **overrides})
    return DPOTrainer(build_model(tokenizer), args=args, train_dataset=preference_rows(32), processing_class=tokenizer)


def pause(point: str) -> None:
    """Tell the test where we are and wait for its signal (a minute at most: a test that never signals fails)."""
    print(f"AT {point}", flush=True)
    time.sleep(60)
    print(f"NOT KILLED AT {point}", flush=True)


def _after(owner: type, name: str, point: str, when) -> None:
    original = getattr(owner, name)

    def patched(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            pause(point)
        return result

    setattr(owner, name, patched)


def arm_kill_point(point: str) -> None:
    import transformers.trainer as trainer_module
    from transformers import Trainer, TrainerState

    def in_checkpoint_4(*args, **kwargs):
        return any("checkpoint-4" in str(value) for value in (*args, *kwargs.values()))

    if point == "weights":
        _after(Trainer, "save_model", point, in_checkpoint_4)
    elif point == "optimizer":
        _after(Trainer, "_save_optimizer_and_scheduler", point, in_checkpoint_4)
    elif point == "state":
        original = TrainerState.save_to_json

        def half_written(self, json_path):
            if "checkpoint-4" not in str(json_path):
                return original(self, json_path)
            original(self, json_path)
            text = Path(json_path).read_text()
            Path(json_path).write_text(text[: len(text) // 2])  # as a write cut short leaves it
            pause(point)

        TrainerState.save_to_json = half_written
    elif point == "rotation":
        rotate = trainer_module.rotate_checkpoints

        def rotating(*args, **kwargs):
            if not Path(kwargs.get("output_dir", "") or args[0], "checkpoint-6").is_dir():
                return rotate(*args, **kwargs)
            unlink = os.unlink

            def unlink_then_pause(path, *a, **k):  # shutil.rmtree deletes file by file with os.unlink
                unlink(path, *a, **k)
                if os.path.basename(path) == "model.safetensors":
                    pause(point)

            os.unlink = unlink_then_pause
            try:
                return rotate(*args, **kwargs)
            finally:
                os.unlink = unlink

        trainer_module.rotate_checkpoints = rotating
    else:
        raise SystemExit(f"unknown kill point {point}")


def arm_mid_step_pause(trainer: DPOTrainer, presses: int) -> None:
    """In the 4th step's forward, wait for the test's SIGINT (a minute at most), so the signal lands mid-step, not
    between steps; when the test presses Ctrl-C twice, wait on for the second one, which Python raises here."""

    def hook(module, inputs):
        if not module.training or trainer.state.global_step != 3 or getattr(hook, "done", False):
            return
        hook.done = True
        print("MID-STEP", flush=True)
        deadline = time.monotonic() + 60
        while not trainer._interrupt.requested and time.monotonic() < deadline:
            time.sleep(0.05)  # the signal handler runs between these sleeps
        if presses == 2:
            time.sleep(60)

    trainer.model.register_forward_pre_hook(hook)


def main() -> None:
    output_dir, mode, value = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "kill":
        arm_kill_point(value)
        fault_trainer(output_dir).train()
        print("FINISHED WITHOUT REACHING THE KILL POINT", flush=True)
    elif mode == "interrupt":
        # Python's own handler, as in a terminal (a process started in the background inherits SIGINT ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        trainer = fault_trainer(output_dir, save_strategy=value.removesuffix("-twice"))
        arm_mid_step_pause(trainer, presses=2 if value.endswith("-twice") else 1)
        try:
            trainer.train()
        except KeyboardInterrupt as interrupted:
            print(f"INTERRUPTED {type(interrupted).__name__} AT STEP {trainer.state.global_step}", flush=True)
            raise
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
