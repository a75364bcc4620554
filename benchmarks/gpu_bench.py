"""GPU benchmark: hf_dpo's DPOTrainer beside TRL's on a random-weight Llama-3-8B-shaped model in bf16 (no download),
LoRA r16 on all linear layers, ~2k-token pairs; then QLoRA (NF4) peak memory at 2 x 1024 tokens, batch 1.

    python benchmarks/gpu_bench.py --out gpu_results.json   # on one H100/H200 (benchmarks/gpu_check.sh runs it)
    python benchmarks/gpu_bench.py --dry-run                # the same code on a tiny model on CPU, under a minute

Each run is a fresh child process (this script with --child), so its peak memory is its own; runs alternate
hf_dpo, TRL. A run trains W warm-up + N timed steps; a step's time is measured between ``on_step_begin`` and
``on_step_end`` with the device synchronised at both ends. Reported per (workload, attention):

- tokens/s: the pairs' tokens (prompt + chosen + prompt + rejected: what padded rows hold, padding aside), the same
  count for both trainers, over the timed steps;
- MFU: the FLOPs a pair needs (benchmarks/flops.py: each prompt once, LoRA's input gradients, the reference's
  forward; recomputation not counted) per second over the GPU's bf16 peak: the same numerator for both trainers,
  so MFU compares useful throughput; ``layout_fu`` counts instead the FLOPs of the layout each trainer runs (TRL's
  padded rows read each prompt twice), which says how busy the GPU was;
- peak memory: ``torch.cuda.max_memory_allocated`` during ``train()``.

The data are words of a word-level tokenizer built in code (one token a word, so lengths are exact); both trainers
tokenize the same text. FlashAttention runs where ``flash_attn`` imports; TRL where ``trl`` imports (on the GPU
machine both travel as wheels: see benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # flops.py beside this script
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from flops import Shape, dpo_step_flops, padded_attended, peak_flops, shared_attended

LLAMA3_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1200,
    "max_position_embeddings": 512,
}
# (prompt, chosen, rejected) tokens: sequences of ~2k tokens
WORKLOADS = {"prompt-heavy": (1792, 256, 256), "balanced": (1024, 1024, 1024), "completion-heavy": (256, 1792, 1792)}
QLORA_WORKLOAD = "qlora-2x1024"
WORKLOADS[QLORA_WORKLOAD] = (512, 512, 512)  # QLoRA's memory: two 1024-token sequences, batch 1
DRY_RUN_SCALE = 32  # the dry run's lengths: 1/32 of the real ones
WORDS = [f"w{index}" for index in range(1000)]
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}


def tokenizer() -> Any:
    """A word-level tokenizer over WORDS: one token a word, EOS ``</s>``, pad ``<pad>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def pairs(lengths: tuple[int, int, int], count: int, seed: int) -> dict[str, list[str]]:
    """``count`` pairs of exactly these word counts (completions lose one word to the EOS token they get)."""
    rng = random.Random(seed)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    prompt, chosen, rejected = lengths
    return {
        "prompt": [text(prompt) for _ in range(count)],
        "chosen": [" " + text(chosen - 1) for _ in range(count)],
        "rejected": [" " + text(rejected - 1) for _ in range(count)],
    }


def build_model(spec: dict[str, Any]) -> Any:
    """The random-weight Llama in bf16 on the GPU (fp32 on the CPU of a dry run), initialised where it lives."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = TINY if spec["dry_run"] else LLAMA3_8B
    config = LlamaConfig(**shape, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    device, dtype = ("cpu", torch.float32) if spec["dry_run"] else ("cuda", torch.bfloat16)
    torch.manual_seed(spec["seed"])
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM._from_config(config, attn_implementation=spec["attention"])
    finally:
        torch.set_default_dtype(default)
    return model


def trainer_for(spec: dict[str, Any], model: Any, callbacks: list[Any]) -> Any:
    """The trainer ``spec`` names, on the pairs of its workload; the same settings for both."""
    from datasets import Dataset
    from peft import LoraConfig

    lengths = scaled(spec)
    rows = pairs(lengths, spec["batch"] * (spec["warmup"] + spec["steps"]), spec["seed"])
    common = {
        "output_dir": tempfile.mkdtemp(prefix="gpu_bench_"),
        "per_device_train_batch_size": spec["batch"],
        "max_steps": spec["warmup"] + spec["steps"],
        "learning_rate": 1e-5,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": not spec["dry_run"],
        "use_cpu": spec["dry_run"],
        "gradient_checkpointing": True,  # TRL's default, and what fits 2k-token pairs of an 8B model
        "max_length": 2 * sum(lengths),
        "train_sampling_strategy": "sequential",
        "disable_tqdm": True,
        "seed": spec["seed"],
    }
    if spec["trainer"] == "hf_dpo":
        from hf_dpo import DPOTrainer, DPOTrainingArguments

        args = DPOTrainingArguments(**common, ref_logps_cache=False, **spec.get("model_init", {}))
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common)
    return DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(rows),
        processing_class=tokenizer(),
        peft_config=LoraConfig(**LORA),
        callbacks=callbacks,
    )


def scaled(spec: dict[str, Any]) -> tuple[int, int, int]:
    lengths = WORKLOADS[spec["workload"]]
    return tuple(max(2, n // DRY_RUN_SCALE) for n in lengths) if spec["dry_run"] else lengths


def step_timer(cuda: bool) -> Any:
    """Each step's seconds, the device synchronised at both ends (kernels finish before the clock reads)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.started, self.seconds = 0.0, []

        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.started)

    return StepTimer()


def peak_memory_gib(cuda: bool) -> float:
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One trainer, one workload: train, then the step times, memory and FLOP rates."""
    import torch

    cuda = not spec["dry_run"]
    timer = step_timer(cuda)
    model = spec["model_path"] if spec.get("model_path") else build_model(spec)
    trainer = trainer_for(spec, model, [timer])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = timer.seconds[spec["warmup"] :]
    prompt, chosen, rejected = scaled(spec)
    step_pairs = spec["batch"]
    shape = Shape(**_shape_fields(spec))
    useful = step_pairs * dpo_step_flops(
        shape, shared_attended(prompt, chosen, rejected), head_tokens=chosen + rejected
    )
    layout = shared_attended if spec["trainer"] == "hf_dpo" else padded_attended
    executed = step_pairs * dpo_step_flops(shape, layout(prompt, chosen, rejected), head_tokens=chosen + rejected)
    step_s = statistics.median(timed)
    peak = peak_flops(torch.cuda.get_device_name()) if cuda else None
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        **spec,
        "step_s": step_s,
        "tokens_per_s": step_pairs * (2 * prompt + chosen + rejected) / step_s,
        "mfu": useful / step_s / peak if peak else None,
        "layout_fu": executed / step_s / peak if peak else None,
        "peak_memory_gib": peak_memory_gib(cuda),
        "losses": losses,
        "device": torch.cuda.get_device_name() if cuda else "cpu (dry run)",
    }


def _shape_fields(spec: dict[str, Any]) -> dict[str, int]:
    shape = TINY if spec["dry_run"] else LLAMA3_8B
    return {
        "layers": shape["num_hidden_layers"],
        "hidden": shape["hidden_size"],
        "intermediate": shape["intermediate_size"],
        "heads": shape["num_attention_heads"],
        "kv_heads": shape["num_key_value_heads"],
        "vocab": shape["vocab_size"],
    }


def in_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One run in a fresh process (its memory its own); a dry run stays in this one (its numbers mean nothing, and
    a process start costs more than the run)."""
    if spec["dry_run"]:
        try:
            return run_child(spec)
        except Exception as error:  # the report lists it, as for a child's failure
            return {**spec, "error": f"{type(error).__name__}: {error}"}
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        return {**spec, "error": f"exit {done.returncode}: {done.stderr[-2000:]}"}
    return json.loads(lines[-1][len("RESULT ") :])


def qlora_checkpoint(dry_run: bool, seed: int) -> str:
    """A random-weight model saved in bf16 (fp32 for a dry run), for the QLoRA run to load quantized by name, as a
    user's recipe does."""
    import torch

    folder = tempfile.mkdtemp(prefix="gpu_bench_qlora_")
    model = build_model({"dry_run": dry_run, "attention": "sdpa", "seed": seed})
    model.save_pretrained(folder, safe_serialization=True)
    del model
    if not dry_run:
        torch.cuda.empty_cache()
    return folder


def available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="a tiny model on CPU, one step a run: the code path, in a minute"
    )
    parser.add_argument("--workloads", default=",".join(name for name in WORKLOADS if name != QLORA_WORKLOAD))
    parser.add_argument("--batch", type=int, default=2, help="pairs per step")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-qlora", action="store_true")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run")
    parser.add_argument("--out", default="gpu_results.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.dry_run:
        options.warmup, options.steps = 0, 1
    if options.child:
        print("RESULT " + json.dumps(run_child(json.loads(options.child))), flush=True)
        return 0
    attentions = ["sdpa"] + (["flash_attention_2"] if available("flash_attn") and not options.dry_run else [])
    trainers = ["hf_dpo"] + (["trl"] if available("trl") else [])
    base = {"dry_run": options.dry_run, "batch": options.batch, "warmup": options.warmup, "steps": options.steps}
    base["seed"] = options.seed
    results = []
    for workload in options.workloads.split(","):
        for attention in attentions:
            for trainer in trainers:
                spec = {**base, "workload": workload, "attention": attention, "trainer": trainer}
                results.append(in_child(spec, options.timeout))
                print(
                    json.dumps(
                        {
                            k: results[-1].get(k)
                            for k in (
                                "workload",
                                "attention",
                                "trainer",
                                "step_s",
                                "tokens_per_s",
                                "mfu",
                                "peak_memory_gib",
                                "error",
                            )
                        }
                    ),
                    flush=True,
                )
    if not options.no_qlora and available("bitsandbytes"):
        folder = qlora_checkpoint(options.dry_run, options.seed)
        nf4 = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}
        if not options.dry_run:
            nf4["bnb_4bit_compute_dtype"] = "bfloat16"
        quantized = {"model_init_kwargs": {"quantization_config": nf4}}
        if not options.dry_run:
            quantized["model_init_kwargs"]["dtype"] = "bfloat16"
        spec = {**base, "batch": 1, "workload": QLORA_WORKLOAD, "attention": "sdpa", "trainer": "hf_dpo"}
        spec |= {"model_path": folder, "model_init": quantized}
        results.append(in_child(spec, options.timeout))
        print(json.dumps({k: results[-1].get(k) for k in ("workload", "peak_memory_gib", "error")}), flush=True)
    with open(options.out, "w") as file:
        json.dump(results, file, indent=1)
    print(table(results))
    return 1 if any("error" in result for result in results) else 0


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per run."""
    lines = [
        "| workload | attention | trainer | s/step | tokens/s | MFU | layout FU | peak GiB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cell(value: Any, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    for result in results:
        if "error" in result:
            lines.append(f"| {result['workload']} | {result['attention']} | {result['trainer']} | error | | | | |")
            continue
        lines.append(
            f"| {result['workload']} | {result['attention']} | {result['trainer']} | {cell(result['step_s'], '.3f')} "
            f"| {cell(result['tokens_per_s'], '.0f')} | {cell(result['mfu'], '.1%')} | {cell(result['layout_fu'], '.1%')} "
            f"| {cell(result['peak_memory_gib'], '.2f')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
