"""hf-dpo inspect on lists of answers: each list's answers best first with their scores, tokenized as training
tokenizes them, what was cut and what was dropped, and the split's counts."""

import argparse
import json

import pytest
from tiny import build_tokenizer

from hf_dpo import DPOTrainingArguments
from hf_dpo.cli.commands import add_commands
from hf_dpo.data.preparation import prepare_dataset
from hf_dpo.tools.list_inspection import tokenize_list_for_inspection

ROWS = [
    {"prompt": "Question: fox?", "completions": [" no", " yes good", " maybe"], "scores": [1, 3, 2]},
    {"prompt": "Question: dog?", "completions": [" yes " * 30, " no"], "ranking": [1, 2]},
    {"prompt": "Question: tied?", "completions": [" a", " b"], "scores": [2, 2]},
]


def _run(argv):
    parser = argparse.ArgumentParser(prog="hf-dpo")
    add_commands(parser.add_subparsers(dest="command", required=True))
    options = parser.parse_args(argv)
    return options.run(options)


@pytest.fixture
def tokenizer_dir(tmp_path):
    build_tokenizer().save_pretrained(tmp_path / "tokenizer")
    return str(tmp_path / "tokenizer")


def test_inspection_ids_are_the_trainings_ids(tokenizer):
    args = DPOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True, max_length=12)
    prepared, _ = prepare_dataset(ROWS[:2], tokenizer, args)
    for index, row in enumerate(prepared):
        shown = tokenize_list_for_inspection(ROWS[index], index, tokenizer, args)
        assert shown.prompt == row["prompt_input_ids"]
        assert list(shown.completions.values()) == row["completions_input_ids"]
        assert list(shown.scores.values()) == row["completion_scores"]


def test_inspect_shows_each_list_best_first_with_scores_cuts_and_drops(tokenizer_dir, tmp_path, capsys):
    data = tmp_path / "lists.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in ROWS))
    argv = [
        "inspect",
        str(data),
        "--tokenizer",
        tokenizer_dir,
        "--rows",
        "3",
        "--max_length",
        "16",
        "--color",
        "never",
    ]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "── row 0 · kept · prompt 4 tokens · 3 answers" in out
    assert "  prompt   │Question: fox?" in out
    first = out.index("       3 │⟦ yes good</s>⟧")
    assert first < out.index("       2 │⟦ maybe</s>⟧") < out.index("       1 │⟦ no</s>⟧")  # best first
    assert "── row 1 · truncated" in out and "      -1 │⟦ yes" in out and "tokens]" in out
    assert "── row 2 · dropped: every answer tied" in out and "       2 │' a'" in out  # as given
    assert "WARNING (no_eos, 1 answers, first: row 1)" in out
    assert "3 rows scanned: 1 kept, 1 truncated, 1 dropped: every answer tied" in out
    assert "answers per prompt: mean 2.5, max 3" in out
