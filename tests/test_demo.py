"""The demo's preference data: the shipped files are what the generator makes, and the checker is exact."""

import json
from pathlib import Path

import pytest

from hf_dpo.demo.make_data import build_splits, is_correct, normalise

DEMO = Path(__file__).parents[1] / "hf_dpo" / "demo"


def _read(name):
    return [json.loads(line) for line in (DEMO / name).read_text(encoding="utf-8").splitlines()]


def test_shipped_files_equal_the_generator_output():
    train, test = build_splits()
    assert _read("train.jsonl") == train and _read("test.jsonl") == test


def test_sizes_and_no_question_in_both_splits():
    train, test = _read("train.jsonl"), _read("test.jsonl")
    assert len(train) >= 300 and len(test) == 80
    questions = lambda rows: {row["prompt"][-1]["content"] for row in rows}  # noqa: E731
    assert not questions(train) & questions(test)
    assert {row["category"] for row in test} == {row["category"] for row in train}


def test_every_pair_prefers_the_bare_answer_over_a_sentence_containing_it():
    for row in _read("train.jsonl") + _read("test.jsonl"):
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert is_correct(chosen, row["answers"]) and not is_correct(rejected, row["answers"])
        assert normalise(chosen) in normalise(rejected)


@pytest.mark.parametrize(
    ("response", "correct"),
    [
        ("Paris", True),
        ("paris.", True),
        ('"Paris"', True),
        ("**Paris**", True),
        ("The capital is Paris.", False),
        ("", False),
    ],
)
def test_checker_is_exact_match(response, correct):
    assert is_correct(response, ["Paris"]) is correct
