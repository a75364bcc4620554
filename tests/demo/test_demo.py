"""The demo's preference data: the shipped files are what the generator makes, the checker is exact, and the task
registry scores greedy answers without leaving the model in eval mode."""

import json
from pathlib import Path

import pytest
from tiny import build_model, build_tokenizer

from hf_dpo.demo.make_data import build_splits, is_correct, normalise
from hf_dpo.demo.tasks import TASKS, get_checker, score_greedy_answers

DEMO = Path(__file__).parents[2] / "hf_dpo" / "demo"


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


def test_the_task_registry_holds_the_checker_itself():
    assert get_checker("concise_qa") is is_correct and all(callable(checker) for checker in TASKS.values())
    with pytest.raises(ValueError, match="task='nope' is not one of concise_qa"):
        get_checker("nope")


def test_greedy_scoring_restores_the_models_mode_and_the_padding_side():
    tokenizer = build_tokenizer()
    model = build_model(tokenizer).train()
    rows = {"prompt": [[{"role": "user", "content": "What is the capital of France?"}], "Question: 2 + 2 ="]}
    rows["answers"] = [["Paris"], ["4"]]
    accuracy, results = score_greedy_answers(model, tokenizer, rows, is_correct, max_new_tokens=3)
    assert model.training and tokenizer.padding_side == "right"
    assert [result["question"] for result in results] == ["What is the capital of France?", "Question: 2 + 2 ="]
    assert accuracy == sum(result["correct"] for result in results) / 2
