"""The demo's list data (hf_dpo/demo/make_lists.py): four different answers per question, graded as the demo's
checks (format and fact) read them, the sentence best as in the pair demo, the shipped files equal to the
generator's output, and rows the trainer takes as they are."""

import copy
import json
from pathlib import Path

import pytest

from hf_dpo import DPOTrainingArguments
from hf_dpo.data.preparation import prepare_dataset
from hf_dpo.demo.checks import one_sentence, states_answer
from hf_dpo.demo.make_lists import FOLDER, GRADES, SCORES, answer_by_grade, build_list_splits, check_list_rows
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


def test_the_best_answer_is_the_pair_demos_kind_of_chosen_reply():
    # issue 26: preferring the bare answer makes a 135M model lose facts; the lists rank the one sentence first, the
    # bare answer second, the chatter third, the wrong fact last
    assert GRADES == ("sentence", "bare", "verbose", "wrong")
    assert [SCORES[grade] for grade in GRADES] == [3.0, 2.0, 1.0, 0.0]
    for row in _read("train.jsonl") + _read("test.jsonl"):
        answers = answer_by_grade(row)
        best = answers["sentence"]
        assert one_sentence(best, row["answers"]) and states_answer(best, row["answers"])
        assert best != answers["bare"] and best in answers["verbose"]  # the statement the chatter wraps


def test_the_demo_checks_grade_each_answer():
    row = _read("test.jsonl")[0]
    answers = answer_by_grade(row)
    verdicts = {
        grade: (one_sentence(text, row["answers"]), states_answer(text, row["answers"]))
        for grade, text in answers.items()
    }
    assert verdicts["sentence"] == verdicts["bare"] == (True, True)
    assert verdicts["verbose"] == (False, True) and verdicts["wrong"][1] is False


def _with_answer(row, grade, text):
    row = copy.deepcopy(row)
    index = row["scores"].index(SCORES[grade])
    row["completions"][index][0]["content"] = text
    return row


def test_check_list_rows_refuses_rows_the_checks_would_grade_otherwise():
    row = _read("test.jsonl")[0]
    answers = answer_by_grade(row)
    swapped = copy.deepcopy(row)  # the bare answer ranked best: the trap issue 26 removed
    swapped["scores"] = [{3.0: 2.0, 2.0: 3.0}.get(score, score) for score in row["scores"]]
    with pytest.raises(ValueError, match="the bare answer must be the accepted answer alone"):
        check_list_rows([swapped])
    with pytest.raises(ValueError, match="the verbose answer reads as"):
        check_list_rows([_with_answer(row, "verbose", answers["sentence"].rstrip(".") + " indeed.")])
    with pytest.raises(ValueError, match="the wrong answer reads as"):
        check_list_rows([_with_answer(row, "wrong", answers["sentence"] + " Or so.")])
    with pytest.raises(ValueError, match="four different answers"):
        check_list_rows([_with_answer(row, "wrong", answers["sentence"])])
    with pytest.raises(ValueError, match="duplicate questions"):
        check_list_rows([row, row])


def test_the_packaged_lists_prepare_as_lists(tokenizer):
    splits = load_packaged_splits("hf_dpo:concise_qa_lists")
    args = DPOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True)
    prepared, stats = prepare_dataset(splits["test"].select(range(8)), tokenizer, args, "eval")
    assert stats.kept == 8 and stats.answers_kept == 32
    assert prepared[0]["completion_scores"] == [3.0, 2.0, 1.0, 0.0]
    assert {"answers", "category"} <= set(prepared.column_names)  # kept for the task's scoring
