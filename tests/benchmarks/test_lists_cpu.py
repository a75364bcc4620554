"""benchmarks/lists_cpu.py: the all-pairs expansion, the table arithmetic on made-up runs, and its --quick run end to
end (a tiny random Llama, a few steps): each prompt and each answer through the policy and the reference once on
lists, counted by the forward hook, against TRL's 12 sequences per 4-answer prompt."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lists_cpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("lists_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["lists_cpu"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["lists_cpu"]


def test_expand_gives_every_ordered_pair_best_first(bench):
    row = {"prompt": "q", "completions": ["w", "x", "y", "z"], "scores": [0, 3, 1, 2]}
    pairs = bench.expand([row])
    assert [(pair["chosen"], pair["rejected"]) for pair in pairs] == [
        ("x", "z"), ("x", "y"), ("x", "w"), ("z", "y"), ("z", "w"), ("y", "w")
    ]  # fmt: skip
    assert bench.expand([{"prompt": "q", "completions": ["a", "b", "c"], "scores": [1, 1, 0]}]) == [
        {"prompt": "q", "chosen": "a", "rejected": "c"},
        {"prompt": "q", "chosen": "b", "rejected": "c"},
    ]  # ties make no pair


def test_the_demo_lists_expand_into_six_pairs_each(bench):
    lists = bench.load_lists(5, "train")
    assert len(bench.expand(lists)) == 30 and all(len(row["completions"]) == 4 for row in lists)


def fake(way, cpu, **extra):
    run = {
        "way": way,
        "loss_type": "all_pairs" if way == "hf_dpo lists" else "sigmoid",
        "policy_rows_per_prompt": 1.0,
        "policy_sequences_per_prompt": 4.0,
        "policy_tokens_per_prompt": 100.0,
        "reference_tokens_per_prompt": 100.0,
        "data_tokens_per_prompt": 100.0,
        "s_per_prompt": 2 * cpu,
        "cpu_s_per_prompt": cpu,
        "peak_rss_gib": 1.5,
        "reward_accuracy": 0.9,
        "top1": 1.0,
        "kendall_tau": 0.8,
        "task_format": 0.25,
        "task_fact": 0.75,
    }
    return {**run, **extra}


def test_table_gives_speed_ups_against_trl_and_marks_failures(bench):
    runs = [
        fake("baseline", 0.0),
        fake("hf_dpo lists", 1.0),
        fake("trl pairs", 4.0, policy_rows_per_prompt=12.0),
        {"way": "hf_dpo pairs", "loss_type": "sigmoid", "error": "exit 1: boom"},
    ]
    lines = bench.table(runs).splitlines()
    assert lines[2].startswith("| untrained (the reference) |") and lines[2].endswith("| 0.250 | 0.750 |")
    assert "| hf_dpo lists (all_pairs) | 1.00 / 4.00 / 100 | 100 | 100 | 2.00 (1.00) | 4.00× |" in lines[3]
    assert "| trl pairs | 12.00 / 4.00 / 100 |" in lines[4] and "1.00×" in lines[4]
    assert "failed" in lines[5] and lines[5].count("|") == lines[1].count("|")


def test_specs_hold_the_baseline_and_one_run_per_way_and_list_loss(bench):
    options = bench.parse_args(["--quick", "--list-losses", "all_pairs,plackett_luce", "--test-lists", "3"])
    runs = bench.specs(options)
    assert {run["test_lists"] for run in runs} == {3}
    assert [(run["way"], run["loss_type"]) for run in runs] == [
        ("baseline", None),
        ("hf_dpo lists", "all_pairs"),
        ("hf_dpo lists", "plackett_luce"),
        ("hf_dpo pairs", "sigmoid"),
        ("trl pairs", "sigmoid"),
    ]
    assert runs[0]["model"] == "tiny" and bench.specs(bench.parse_args([]))[0]["model"] == "smollm2"
    with pytest.raises(SystemExit):
        bench.parse_args(["--ways", "trl lists"])


def test_quick_run_counts_each_prompt_and_answer_once_on_lists(bench, tmp_path, capsys):
    runs = bench.main(["--quick", "--json", str(tmp_path / "runs.jsonl")])
    assert not [run for run in runs if "error" in run], [run.get("error") for run in runs]
    by_way = {run["way"]: run for run in runs}
    lists, pairs, trl = by_way["hf_dpo lists"], by_way["hf_dpo pairs"], by_way["trl pairs"]
    # lists: one row per prompt holding it once and its 4 answers once, for the policy and the reference alike
    assert (lists["policy_rows_per_prompt"], lists["policy_sequences_per_prompt"]) == (1, 4)
    assert lists["policy_tokens_per_prompt"] == lists["reference_tokens_per_prompt"] == lists["data_tokens_per_prompt"]
    assert (trl["policy_rows_per_prompt"], trl["policy_sequences_per_prompt"]) == (12, 12)
    assert (pairs["policy_rows_per_prompt"], pairs["policy_sequences_per_prompt"]) == (6, 12)
    assert trl["policy_tokens_per_prompt"] > pairs["policy_tokens_per_prompt"] > 2 * lists["policy_tokens_per_prompt"]
    # the same objective on the same prompts: the same held-out ranking, whichever way it was computed
    for run in (pairs, trl):
        assert run["reward_accuracy"] == pytest.approx(lists["reward_accuracy"], abs=1e-3)
    assert by_way["baseline"]["reward_accuracy"] == 0
    for run in runs:  # the demo's two checks of the greedy answers, each a share of the held-out questions
        assert 0 <= run["task_format"] <= 1 and 0 <= run["task_fact"] <= 1
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 4
    assert "| hf_dpo lists (all_pairs) | 1.00 / 4.00 /" in capsys.readouterr().out
