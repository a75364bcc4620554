"""Many answers per prompt on CPU: the demo's 4-answer lists trained three ways, at the same optimizer steps and the
same prompts per step.

    python benchmarks/lists_cpu.py --json lists.jsonl         # SmolLM2-135M LoRA, 25 steps of 4 prompts (~1 h alone)
    python benchmarks/lists_cpu.py --quick                    # a tiny random Llama built in code: about a minute

- ``hf_dpo lists``: hf_dpo's DPOTrainer on the lists (``all_pairs``: the sigmoid loss on every ordered pair, the
  expansion's objective; ``--list-losses`` adds others, e.g. ``plackett_luce``), each list one shared-prompt group;
- ``hf_dpo pairs``: hf_dpo's DPOTrainer on the all-pairs expansion (6 pairs per 4-answer list), 6x the pairs per step;
- ``trl pairs``: TRL's DPOTrainer on the same expansion and batches.

Every run reads the same prompts in the same order (``train_sampling_strategy="sequential"``): a step covers B lists,
or the 6B pairs they expand into. What goes through the model is counted, not estimated: a forward pre-hook on the
model adds up, per timed step, the rows, the real tokens (its 2D attention mask) and the answer sequences (the
shared-prompt groups' answers, or the padded rows) of every policy forward (with grad) and reference forward (without).
Step times as speed_cpu.py takes them (on_step_begin to on_step_end, wall and this process's CPU seconds; medians over
the timed steps); peak memory is resident memory sampled every 10 ms in ``train()``. Then each trained policy is
scored on the held-out lists by hf_dpo's list evaluation (implicit rewards against the base model, adapters disabled:
pairwise accuracy, top-1, Kendall's τ) and by the demo's task (greedy answers checked two ways, as the demo's are:
format, one sentence, and fact, the right answer in it; :mod:`hf_dpo.demo.checks`). Each run is a fresh child process;
ratios compare runs of one invocation on one machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOLLM2 = "hf_dpo:SmolLM2-135M-Instruct"
DATASET = "hf_dpo:concise_qa_lists"
WAYS = ("hf_dpo lists", "hf_dpo pairs", "trl pairs")
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}
FULL = {"steps": 25, "warmup": 1, "batch": 4, "test_lists": 80, "max_new_tokens": 24, "model": "smollm2"}
HELD_OUT = ("reward_accuracy", "top1", "kendall_tau", "task_format", "task_fact")  # the table's last columns
QUICK = {"steps": 2, "warmup": 1, "batch": 2, "test_lists": 6, "max_new_tokens": 4, "model": "tiny"}


# --- data -------------------------------------------------------------------------------------------------------


def expand(lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each list as all its ordered pairs (better answer chosen), list after list, best pairs first.

    >>> expand([{"prompt": "q", "completions": ["a", "b", "c"], "scores": [1, 3, 2]}])
    [{'prompt': 'q', 'chosen': 'b', 'rejected': 'a'}, {'prompt': 'q', 'chosen': 'b', 'rejected': 'c'}, {'prompt': 'q', 'chosen': 'c', 'rejected': 'a'}]
    """
    pairs = []
    for row in lists:
        answers = sorted(zip(row["scores"], range(len(row["scores"]))), key=lambda item: -item[0])
        for position, (score, better) in enumerate(answers):
            for other_score, worse in answers[position + 1 :]:
                if score > other_score:
                    chosen, rejected = row["completions"][better], row["completions"][worse]
                    pairs.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
    return pairs


def load_lists(count: int, split: str) -> list[dict[str, Any]]:
    """The first ``count`` lists of the demo's list data (prompt, completions, scores, answers)."""
    from hf_dpo.demo.packaged import load_packaged_splits

    rows = load_packaged_splits(DATASET)[split]
    keep = ("prompt", "completions", "scores", "answers")
    return [{name: rows[index][name] for name in keep} for index in range(min(count, len(rows)))]


# --- one run (the child process) --------------------------------------------------------------------------------


def load_model(spec: dict[str, Any]) -> tuple[Any, Any]:
    """(model, tokenizer): the packaged SmolLM2, or for --quick a tiny random Llama and a tokenizer built in code."""
    import torch

    if spec["model"] == "smollm2":
        from hf_dpo.models.loading import load_causal_lm, load_tokenizer

        return load_causal_lm(SMOLLM2), load_tokenizer(SMOLLM2)
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    backend = ByteLevelBPETokenizer()
    corpus = [json.dumps(row) for row in load_lists(64, "train")]
    backend.train_from_iterator(corpus, vocab_size=600, special_tokens=specials, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    torch.manual_seed(spec["seed"])
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    ids = {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), num_key_value_heads=2, **shape, **ids)), tokenizer


class Traffic:
    """A forward pre-hook counting what goes through the model while ``counting``: rows, real tokens and answer
    sequences, for forwards with grad (the policy) and without (the reference)."""

    def __init__(self) -> None:
        self.counting = False
        self.totals = {
            f"{side}_{kind}": 0 for side in ("policy", "reference") for kind in ("rows", "tokens", "sequences")
        }

    def __call__(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        import torch

        if not self.counting:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        call = kwargs.get("hf_dpo_shared_prompt")
        side = "policy" if torch.is_grad_enabled() else "reference"
        tokens = int(mask.sum()) if mask is not None and mask.dim() == 2 else input_ids.numel()
        sequences = sum(len(group.ends) for group in call.segments.groups) if call is not None else input_ids.shape[0]
        self.totals[f"{side}_rows"] += input_ids.shape[0]
        self.totals[f"{side}_tokens"] += tokens
        self.totals[f"{side}_sequences"] += sequences


def make_callback(traffic: Traffic, warmup: int) -> Any:
    """Times each optimizer step (wall and CPU seconds) and counts the traffic of the steps after ``warmup``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds, self.cpu_seconds, self.steps = [], [], 0

        def on_step_begin(self, args, state, control, **kwargs):
            traffic.counting = self.steps >= warmup
            self.started, self.cpu_started = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)
            self.cpu_seconds.append(time.process_time() - self.cpu_started)
            traffic.counting, self.steps = False, self.steps + 1

    return StepTimer()


def build_trainer(spec: dict[str, Any], model: Any, tokenizer: Any, callback: Any) -> Any:
    import tempfile

    from peft import LoraConfig

    lists = load_lists((spec["warmup"] + spec["steps"]) * spec["batch"], "train")
    common = {
        "output_dir": tempfile.mkdtemp(prefix="lists_cpu_"),
        "max_steps": spec["warmup"] + spec["steps"],
        "learning_rate": spec["learning_rate"],
        "lr_scheduler_type": "constant",
        "beta": 0.1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": spec["bf16"],
        "gradient_checkpointing": False,
        "seed": spec["seed"],
        "max_length": 256,
        "train_sampling_strategy": "sequential",  # the same prompts in the same steps
        "disable_tqdm": True,
    }
    pairs = spec["way"] != "hf_dpo lists"
    batch = spec["batch"] * (len(expand(lists)) // len(lists) if pairs else 1)  # every list has 4 answers: 6 pairs
    train = expand(lists) if pairs else lists
    if spec["way"] == "trl pairs":
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, per_device_train_batch_size=batch)
        train = Dataset.from_list(train)  # TRL takes no list of dicts
    else:
        from hf_dpo import DPOTrainer, DPOTrainingArguments

        extra = {"loss_type": spec["loss_type"]} if not pairs else {}
        args = DPOTrainingArguments(**common, per_device_train_batch_size=batch, ref_logps_cache=False, **extra)
    return DPOTrainer(
        model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=LoraConfig(**LORA),
        callbacks=[callback],
    )


def held_out_scores(spec: dict[str, Any], policy: Any, tokenizer: Any) -> dict[str, float]:
    """Ranking metrics on the held-out lists (against the base model) and the demo's task checks (``task_format``,
    ``task_fact``: the share of greedy answers that pass each)."""
    from types import SimpleNamespace

    import torch
    from datasets import Dataset

    from hf_dpo import DPOTrainingArguments
    from hf_dpo.demo.tasks import get_task, score_greedy_answers
    from hf_dpo.reference.kinds import DisabledAdapterReference
    from hf_dpo.tools.list_evaluation import list_records, list_summary

    test = load_lists(spec["test_lists"], "test")
    args = DPOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True, beta=0.1, max_length=256)
    dataset = Dataset.from_list(test).remove_columns("answers")
    dataset = dataset.add_column("row", list(range(len(test))))
    models = SimpleNamespace(policy=policy, reference=DisabledAdapterReference())
    dtype = torch.bfloat16 if spec["bf16"] else None
    ranking = list_summary(list_records(models, dataset, tokenizer, args, 8, dtype))
    shares, _ = score_greedy_answers(
        policy, tokenizer, Dataset.from_list(test), get_task("concise_qa"), spec["max_new_tokens"], bf16=spec["bf16"]
    )
    keys = ("reward_accuracy", "top1", "kendall_tau", "reward_margin")
    return {**{name: ranking[name] for name in keys}, **{f"task_{name}": share for name, share in shares.items()}}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One way (or, for ``baseline``, the untrained model's held-out scores): build, train, count, score."""
    import psutil
    import torch

    model, tokenizer = load_model(spec)
    if spec["way"] == "baseline":
        from peft import LoraConfig, get_peft_model

        return {**spec, **held_out_scores(spec, get_peft_model(model, LoraConfig(**LORA)), tokenizer)}
    traffic = Traffic()
    model.register_forward_pre_hook(traffic, with_kwargs=True)
    timer = make_callback(traffic, spec["warmup"])
    trainer = build_trainer(spec, model, tokenizer, timer)
    process = psutil.Process()
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    trainer.train()
    stop.set()
    sampler.join()
    timed = timer.seconds[spec["warmup"] :]
    prompts = spec["steps"] * spec["batch"]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    trainer.model.eval()
    with torch.no_grad():
        scores = held_out_scores(spec, trainer.model, tokenizer)
    return {
        **spec,
        **{f"{name}_per_prompt": value / prompts for name, value in traffic.totals.items()},
        "data_tokens_per_prompt": data_tokens(spec, tokenizer),
        "threads": torch.get_num_threads(),
        "step_s": timer.seconds,
        "median_step_s": statistics.median(timed),
        "median_step_cpu_s": statistics.median(timer.cpu_seconds[spec["warmup"] :]),
        "s_per_prompt": statistics.median(timed) / spec["batch"],
        "cpu_s_per_prompt": statistics.median(timer.cpu_seconds[spec["warmup"] :]) / spec["batch"],
        "peak_rss_gib": peak[0] / 2**30,
        "losses": losses,
        **scores,
    }


def data_tokens(spec: dict[str, Any], tokenizer: Any) -> float:
    """Per timed prompt, the tokens of its prompt and its answers, each once (as hf_dpo tokenizes them)."""
    from hf_dpo import DPOTrainingArguments
    from hf_dpo.data.preparation import prepare_dataset

    args = DPOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True, max_length=256)
    lists = load_lists((spec["warmup"] + spec["steps"]) * spec["batch"], "train")[spec["warmup"] * spec["batch"] :]
    prepared, _ = prepare_dataset(lists, tokenizer, args)
    total = sum(
        len(p) + sum(map(len, a)) for p, a in zip(prepared["prompt_input_ids"], prepared["completions_input_ids"])
    )
    return total / len(lists)


# --- the parent: runs, summary, report --------------------------------------------------------------------------


def run_in_child(spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    if output.returncode != 0 or not lines:
        return {**spec, "error": f"exit {output.returncode}: {output.stderr[-3000:]}"}
    return json.loads(lines[-1][len("RESULT ") :])


def label(run: dict[str, Any]) -> str:
    return f"{run['way']} ({run['loss_type']})" if run["way"] == "hf_dpo lists" else run["way"]


def number(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def table(runs: list[dict[str, Any]]) -> str:
    """One Markdown row per run; speed-ups are TRL's CPU seconds per prompt over the run's (>1: faster than TRL)."""
    trl = next((run for run in runs if run["way"] == "trl pairs" and "error" not in run), None)
    lines = [
        "| run | policy rows / sequences / tokens per prompt | reference tokens per prompt | data tokens per prompt "
        "| s / prompt (CPU s) | prompts/s vs TRL (CPU) | peak RSS | held-out pair accuracy | top-1 | Kendall τ "
        "| format | fact |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        if "error" in run:
            lines.append(f"| {label(run)} | failed: {run['error'][-120:]!r} |" + " |" * 10)
            continue
        if run["way"] == "baseline":
            scores = [number(run[name], 3) for name in HELD_OUT]
            lines.append("| untrained (the reference) | | | | | | | " + " | ".join(scores) + " |")
            continue
        speed = trl["cpu_s_per_prompt"] / run["cpu_s_per_prompt"] if trl else None
        cells = [
            label(run),
            f"{run['policy_rows_per_prompt']:.2f} / {run['policy_sequences_per_prompt']:.2f} / "
            f"{run['policy_tokens_per_prompt']:.0f}",
            number(run["reference_tokens_per_prompt"], 0),
            number(run["data_tokens_per_prompt"], 0),
            f"{run['s_per_prompt']:.2f} ({run['cpu_s_per_prompt']:.2f})",
            number(speed, 2, "×"),
            number(run["peak_rss_gib"], 2, " GiB"),
            *(number(run[name], 3) for name in HELD_OUT),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(options: argparse.Namespace, settings: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("torch", "transformers", "peft", "trl"))
    try:
        load = f"load average {os.getloadavg()[0]:.1f} at the end"
    except OSError:
        load = "load unknown"
    command = " ".join(["python benchmarks/lists_cpu.py", *sys.argv[1:]])
    return (
        f"Date: {datetime.date.today().isoformat()}. {os.cpu_count()} cores ({load}). Versions: {versions}.\n"
        f"Settings: {settings['model']}, LoRA r={LORA['r']} on all linear layers, {'bf16' if settings['bf16'] else 'fp32'}, "
        f"{settings['warmup']} warm-up + {settings['steps']} timed steps of {settings['batch']} lists (or their pairs), lr "
        f"{settings['learning_rate']}, beta 0.1, {settings['test_lists']} held-out lists.\nCommand: `{command}`"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny random Llama and a few steps (CI)")
    parser.add_argument("--steps", type=int, help="timed steps per run")
    parser.add_argument("--batch", type=int, help="lists per step (their pairs for the expansion)")
    parser.add_argument("--test-lists", type=int, help="held-out lists scored after training (the demo's: 80)")
    parser.add_argument("--list-losses", default="all_pairs", help="comma-separated list loss types for hf_dpo lists")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of: {', '.join(WAYS)}")
    parser.add_argument("--no-baseline", action="store_true", help="skip the untrained model's held-out scores")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="write every run's raw result here, one JSON object a line")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    options.ways = options.ways.split(",")
    if unknown := [way for way in options.ways if way not in WAYS]:
        parser.error(f"--ways: unknown {unknown}; choose from {', '.join(WAYS)}")
    return options


def specs(options: argparse.Namespace) -> list[dict[str, Any]]:
    settings = {**(QUICK if options.quick else FULL), "bf16": options.bf16, "learning_rate": options.learning_rate}
    settings |= {name: getattr(options, name) for name in ("steps", "batch", "test_lists") if getattr(options, name)}
    settings["seed"] = options.seed
    runs = [] if options.no_baseline else [{**settings, "way": "baseline", "loss_type": None}]
    for way in options.ways:
        losses = options.list_losses.split(",") if way == "hf_dpo lists" else ["sigmoid"]
        runs += [{**settings, "way": way, "loss_type": loss} for loss in losses]
    return runs


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    options = parse_args(argv)
    if options.child:
        print("RESULT " + json.dumps(run_child(json.loads(options.child))), flush=True)
        return []
    started, runs = time.perf_counter(), []
    for spec in specs(options):
        runs.append(run_in_child(spec))
        brief = {key: runs[-1].get(key) for key in ("cpu_s_per_prompt", *HELD_OUT, "error")}
        print(f"{label(spec)}: {json.dumps(brief)[:600]}", flush=True)
        if options.json:
            with open(options.json, "a", encoding="utf-8") as file:
                file.write(json.dumps(runs[-1]) + "\n")
    print("\n" + header(options, specs(options)[-1]) + "\n\n" + table(runs))
    print(f"\n({len(runs)} runs in {(time.perf_counter() - started) / 60:.1f} min)")
    return runs


if __name__ == "__main__":
    main()
