"""The demo's list data (hf_dpo/demo/make_lists.py): four different answers per question, graded as the checker
grades them, the shipped files equal to the generator's output, and rows the trainer takes as they are."""

import json
from pathlib import Path

from hf_dpo import DPOTrainingArguments
from hf_dpo.data.preparation import prepare_dataset
from hf_dpo.demo.make_lists import FOLDER, GRADES, answer_by_grade, build_list_splits, check_list_rows
from hf_dpo.demo.packaged import load_packaged_splits


def _read(name):
    return [json.loads(line) for line in Path(FOLDER, name).read_text(encoding="utf-8").splitlines()]


def test_shipped_files_equal_the_generator_output():
    train, test = build_list_splits()
    assert _read("train.jsonl") == train and _read("test.jsonl") == test
    check_list_rows(train + test)


def test_sizes_answers_and_no_question_in_both_splits():
    train, test = _read("train.jsonl"), _read("test.jsonl")
    assert (len(train), len(test)) == (408, 80)
    questions = {row["prompt"][0]["content"] for row in train}
    assert not questions & {row["prompt"][0]["content"] for row in test}
    assert all(len(row["completions"]) == 4 and sorted(row["scores"]) == [0, 1, 2, 3] for row in train + test)
    orders = {tuple(row["scores"]) for row in train}
    assert len(orders) > 12  # listed in many orders, not best first


def test_grades_read_as_their_names():
    row = _read("test.jsonl")[0]
    answers = answer_by_grade(row)
    assert sorted(answers) == sorted(GRADES)
    assert answers["bare"] == row["answers"][0]
    assert answers["verbose"].startswith(answers["sentence"]) or answers["sentence"] in answers["verbose"]


def test_the_packaged_lists_prepare_as_lists(tokenizer):
    splits = load_packaged_splits("hf_dpo:concise_qa_lists")
    args = DPOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True)
    prepared, stats = prepare_dataset(splits["test"].select(range(8)), tokenizer, args, "eval")
    assert stats.kept == 8 and stats.answers_kept == 32
    assert prepared[0]["completion_scores"] == [3.0, 2.0, 1.0, 0.0]
    assert {"answers", "category"} <= set(prepared.column_names)  # kept for the task's scoring
