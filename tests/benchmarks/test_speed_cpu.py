"""benchmarks/speed_cpu.py without training: the workload builders, the argument parsing and the summary arithmetic
on made-up runs."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speed_cpu.py"


@pytest.fixture(scope="module")
def speed():
    """The script as a module (benchmarks/ is not a package); importing it loads no torch."""
    spec = importlib.util.spec_from_file_location("speed_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["speed_cpu"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    del sys.modules["speed_cpu"]


@pytest.mark.parametrize("name", ["prompt-heavy", "balanced", "completion-heavy", "even-256"])
def test_workload_lengths_stay_within_twenty_percent(speed, name):
    workload = speed.WORKLOADS[name]
    columns = speed.build_workload(workload, pairs=50, seed=3)
    for part, mean_words in (
        ("prompt", workload.prompt_words),
        ("chosen", workload.chosen_words),
        ("rejected", workload.rejected_words),
    ):
        counts = [len(text.split()) for text in columns[part]]
        assert len(counts) == 50
        assert all(math.ceil(0.8 * mean_words) <= count <= math.floor(1.2 * mean_words) for count in counts), part
        assert len(set(counts)) > 1, f"{part}: lengths should vary so batches carry padding"


def test_issue_workloads_are_the_issues_word_counts(speed):
    shapes = {name: speed.WORKLOADS[name] for name in speed.ISSUE_WORKLOADS}
    assert [(w.prompt_words, w.chosen_words, w.rejected_words) for w in shapes.values()] == [
        (320, 40, 30),
        (160, 160, 120),
        (60, 260, 195),
    ]


def test_workloads_are_deterministic_and_seeded(speed):
    balanced = speed.WORKLOADS["balanced"]
    first = speed.build_workload(balanced, pairs=8, seed=42)
    assert first == speed.build_workload(balanced, pairs=8, seed=42)
    assert first != speed.build_workload(balanced, pairs=8, seed=43)
    assert first != speed.build_workload(speed.WORKLOADS["prompt-heavy"], pairs=8, seed=42)


def test_completions_start_with_a_space_and_prompts_do_not(speed):
    """TRL joins prompt + completion as text; hf_dpo tokenizes them apart: the space makes both the same tokens."""
    columns = speed.build_workload(speed.WORKLOADS["prompt-heavy"], pairs=4, seed=0)
    assert all(text.startswith(" ") and not text.startswith("  ") for text in columns["chosen"] + columns["rejected"])
    assert all(not text.startswith(" ") and text.endswith(".") for text in columns["prompt"])


def test_words_text_writes_sentences_of_the_asked_length(speed):
    import random

    text = speed.words_text(random.Random(0), 37)
    assert len(text.split()) == 37
    assert text[0].isupper() and text.endswith(".")
    assert {word.strip(".").lower() for word in text.split()} <= set(speed.VOCABULARY)


def test_token_summary_counts_the_timed_pairs_prompt_twice(speed):
    lengths = [(10, 3, 2), (20, 4, 4), (30, 5, 1), (40, 2, 2)]  # (prompt, chosen, rejected) tokens per row
    spec = {"warmup": 1, "steps": 1, "batch": 2, "max_length": 1024}
    summary = speed.token_summary(lengths, spec)
    # per pair: 2 * prompt + chosen + rejected = 25, 48, 66, 84; timed = rows 2 and 3 (after one warm-up batch of 2)
    assert summary == {
        "rows": 4,
        "dataset_tokens": 25 + 48 + 66 + 84,
        "timed_tokens": 66 + 84,
        "timed_pairs": 2,
        "longest_sequence": 42,
        "over_max_length": 0,
    }
    assert speed.token_summary(lengths, {**spec, "max_length": 40})["over_max_length"] == 1  # 40 + 2 > 40


def test_extra_hf_dpo_args_parse_json_values(speed):
    assert speed.parse_extra_args(["padding_free=true", "beta=0.2", "loss_type=ipo", "max_prompt_length=null"]) == {
        "padding_free": True,
        "beta": 0.2,
        "loss_type": "ipo",
        "max_prompt_length": None,
    }
    with pytest.raises(ValueError, match="key=value"):
        speed.parse_extra_args(["padding_free"])


def test_cells_default_to_each_models_workloads(speed):
    options = speed.parse_args([])
    assert options.trainers == ["hf_dpo", "trl"]
    assert speed.cells(options.models, options.workloads)[-1] == ("llama-lora", "even-256")
    assert speed.cells(["smollm2-full"], ["prompt-heavy", "balanced"]) == [
        ("smollm2-full", "prompt-heavy"),
        ("smollm2-full", "balanced"),
    ]
    with pytest.raises(SystemExit):
        speed.parse_args(["--models", "gpt2"])


def fake_run(trainer: str, step: float, peak: float, **extra) -> dict:
    return {
        "model": "smollm2-lora",
        "workload": "balanced",
        "trainer": trainer,
        "median_step_s": step,
        "pairs_per_s": 2 / step,
        "tokens_per_s": 1000 / step,
        "peak_rss_gib": peak,
        "train_rss_increase_gib": peak - 1.5,
        "final_loss": 0.69,
        "dataset_tokens": 4000,
        "timed_tokens": 1000,
        "timed_pairs": 2,
        "over_max_length": 0,
        **extra,
    }


def test_summary_takes_medians_over_rounds_and_the_ratios(speed):
    runs = [
        fake_run("hf_dpo", 2.0, 3.0),
        fake_run("trl", 5.0, 4.0),
        fake_run("hf_dpo", 4.0, 3.5),  # a slow round
        fake_run("trl", 6.0, 4.0),
        fake_run("hf_dpo", 3.0, 3.2),
        fake_run("trl", 5.5, 5.0),
    ]
    (row,) = speed.summarise(runs)
    assert row["hf_dpo"]["step_s"] == 3.0 and row["trl"]["step_s"] == 5.5  # medians of 3 rounds
    assert row["speed_up"] == pytest.approx(5.5 / 3.0)  # TRL / hf_dpo: > 1 means hf_dpo is faster
    assert row["memory_ratio"] == pytest.approx(3.2 / 4.0)  # hf_dpo / TRL peak RSS
    assert row["hf_dpo"]["tokens_per_pair"] == 500
    assert row["tokens_match"] and row["failed"] == 0


def test_summary_flags_failures_and_token_mismatch(speed):
    runs = [
        fake_run("hf_dpo", 2.0, 3.0),
        fake_run("trl", 4.0, 4.0, dataset_tokens=3900, over_max_length=1),  # TRL cut a row
        {"model": "smollm2-lora", "workload": "balanced", "trainer": "trl", "error": "exit 1: boom"},
    ]
    (row,) = speed.summarise(runs)
    assert row["failed"] == 1 and row["trl"]["rounds"] == 1
    assert not row["tokens_match"]
    found = speed.notes([row])
    assert any("1 run(s) failed" in note for note in found)
    assert any("different token counts" in note for note in found)
    assert any("trl holds rows longer than max_length" in note for note in found)


def test_table_rounds_and_leaves_missing_trainers_blank(speed):
    (row,) = speed.summarise([fake_run("hf_dpo", 2.0, 3.0)])  # --trainers hf_dpo: no TRL column values
    text = speed.table([row])
    header, rule, line = text.splitlines()
    assert header.count("|") == rule.count("|") == line.count("|")
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[:5] == ["smollm2-lora", "balanced", "500", "2.00", "—"]
    assert cells[5] == "—"  # no speed-up without TRL
    assert cells[6:8] == ["1.000 / —", "500 / —"]  # pairs/s and tokens/s: hf_dpo's / TRL's
    assert cells[-1] == "0.6900 / —"


def test_describe_cpu_reads_model_name_and_bf16_flags(speed):
    cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx512f avx512_bf16\n"
    assert speed.describe_cpu(cpuinfo) == "AMD EPYC with AVX-512 BF16"
    assert speed.describe_cpu("model name : Some CPU\nflags : sse2\n") == "Some CPU"
