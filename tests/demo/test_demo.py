"""The demo's preference data and checks: the shipped files are what the generator makes (both the one-sentence
data and the bare-answer one), the two checks (format, fact) say what they claim, and the task registry scores greedy
answers with every check without leaving the model in eval mode."""

import json
from pathlib import Path

import pytest
from tiny import build_model, build_tokenizer

from hf_dpo.demo.checks import MAX_WORDS, bare_answer, one_sentence, sentences, states_answer
from hf_dpo.demo.make_data import BARE_FOLDER, build_splits, check_rows
from hf_dpo.demo.packaged import PACKAGED_DATASETS, load_packaged_splits
from hf_dpo.demo.summary import task_rows, write_answers
from hf_dpo.demo.tasks import TASKS, get_task, score_greedy_answers

DEMO = Path(__file__).parents[2] / "hf_dpo" / "demo"


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(("style", "folder"), [("sentence", DEMO), ("bare", BARE_FOLDER)])
def test_shipped_files_equal_the_generator_output(style, folder):
    train, test = build_splits(style=style)
    assert _read(folder / "train.jsonl") == train and _read(folder / "test.jsonl") == test
    check_rows(train + test, style)


def test_both_datasets_ask_the_same_questions_and_reject_the_same_replies():
    for sentence, bare in zip(_read(DEMO / "train.jsonl"), _read(BARE_FOLDER / "train.jsonl")):
        assert sentence["prompt"] == bare["prompt"] and sentence["rejected"] == bare["rejected"]
        assert bare["chosen"][0]["content"] == sentence["answers"][0]


def test_sizes_and_no_question_in_both_splits():
    train, test = _read(DEMO / "train.jsonl"), _read(DEMO / "test.jsonl")
    assert len(train) >= 300 and len(test) == 80
    questions = lambda rows: {row["prompt"][-1]["content"] for row in rows}  # noqa: E731
    assert not questions(train) & questions(test)
    assert {row["category"] for row in test} == {row["category"] for row in train}


def test_every_pair_prefers_one_sentence_over_chatter_around_the_same_sentence():
    """The preference is about form only: both replies state the answer, the rejected one wraps the chosen one."""
    for row in _read(DEMO / "train.jsonl") + _read(DEMO / "test.jsonl"):
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert one_sentence(chosen, row["answers"]) and not one_sentence(rejected, row["answers"])
        assert states_answer(chosen, row["answers"]) and states_answer(rejected, row["answers"])
        assert chosen in rejected


def test_the_generator_refuses_rows_that_break_the_preference():
    good = build_splits()[1][:1]
    row = good[0]
    swapped = {**row, "chosen": row["rejected"], "rejected": row["chosen"]}
    with pytest.raises(ValueError, match="taught form"):
        check_rows([swapped])
    wrong_fact = {**row, "answers": ["nowhere"]}
    with pytest.raises(ValueError, match="lacks the answer"):
        check_rows([wrong_fact])


@pytest.mark.parametrize(
    ("response", "count"),
    [
        ("The capital of France is Paris.", 1),
        ("Paris", 1),
        ("Great question! The capital of France is Paris.", 2),
        ("The capital of France is Paris. I hope that helps!", 2),
        ("The Hobbit was written by J. R. R. Tolkien.", 1),  # initials are not sentence ends
        ("The capital of the United States is Washington, D.C.", 1),
        ("It is Washington, D.C. I hope that helps.", 2),  # an abbreviation before an opener ends its sentence
        ("The U.S. dollar is used there.", 1),
        ("", 0),
    ],
)
def test_sentences_are_cut_at_sentence_ends_only(response, count):
    assert len(sentences(response)) == count


def test_a_one_letter_answer_ends_its_sentence():
    """ "C." could be an initial; as the row's accepted answer it is a word whose full stop ends the sentence."""
    reply = "That would be C. Carbon has the chemical symbol C."
    assert len(sentences(reply)) == 1 and len(sentences(reply, ["C"])) == 2
    assert not one_sentence(reply, ["C"]) and one_sentence("Carbon has the chemical symbol C.", ["C"])


def test_format_is_one_sentence_of_at_most_max_words():
    assert one_sentence(" ".join(["word"] * MAX_WORDS) + ".")
    assert not one_sentence(" ".join(["word"] * (MAX_WORDS + 1)) + ".")
    assert one_sentence("Paris") and not one_sentence("")


@pytest.mark.parametrize(
    ("response", "answers", "found"),
    [
        ("The capital city of Syria is Damascus.", ["Damascus"], True),
        ("Alexandria", ["Damascus"], False),
        ("A cow has four legs.", ["4", "four"], True),
        ("A sonnet has 14 lines.", ["4", "four"], False),  # whole words: "4" is not in "14"
        ("The Earth's symbol is S.", ["S"], True),
        ("It is the Earth's core.", ["S"], False),  # nor "S" in "Earth's"
        ("he is here", ["He"], False),  # a chemical symbol matches in case
        ("Helium is written He.", ["He"], True),
        ("No is the opposite of yes.", ["no"], True),  # a short lower-case answer is a word, case aside
        ("It lies in the United States.", ["the United States"], True),  # articles aside
    ],
)
def test_fact_is_an_accepted_answer_anywhere_in_the_reply(response, answers, found):
    assert states_answer(response, answers) is found


@pytest.mark.parametrize(
    ("response", "correct"),
    [("Paris", True), ("paris.", True), ('"Paris"', True), ("**Paris**", True), ("The capital is Paris.", False)],
)
def test_bare_answer_is_exact_match(response, correct):
    assert bare_answer(response, ["Paris"]) is correct


def test_the_task_registry_names_its_checks():
    assert get_task("concise_qa").checks == {"format": one_sentence, "fact": states_answer}
    assert get_task("bare_qa").checks["format"] is bare_answer
    assert all(set(task.checks) == set(task.meaning) for task in TASKS.values())
    with pytest.raises(ValueError, match="task='nope' is not one of concise_qa, bare_qa"):
        get_task("nope")


def test_every_packaged_dataset_loads_with_both_splits():
    for name in PACKAGED_DATASETS:
        splits = load_packaged_splits(name)
        assert len(splits["train"]) == 408 and len(splits["test"]) == 80 and "answers" in splits["test"].column_names


def test_greedy_scoring_restores_the_models_mode_and_the_padding_side():
    tokenizer = build_tokenizer()
    model = build_model(tokenizer).train()
    rows = {"prompt": [[{"role": "user", "content": "What is the capital of France?"}], "Question: 2 + 2 ="]}
    rows["answers"] = [["Paris"], ["4"]]
    shares, results = score_greedy_answers(model, tokenizer, rows, get_task("concise_qa"), max_new_tokens=3)
    assert model.training and tokenizer.padding_side == "right"
    assert [result["question"] for result in results] == ["What is the capital of France?", "Question: 2 + 2 ="]
    for name, check in get_task("concise_qa").checks.items():
        assert [result[name] for result in results] == [check(r["answer"], r["answers"]) for r in results]
        assert shares[name] == sum(result[name] for result in results) / 2


def test_the_answers_file_holds_both_stages_side_by_side(tmp_path):
    before = [{"question": "Q?", "answers": ["a"], "answer": "The answer is a, you see. Yes.", "format": False,
               "fact": True}]  # fmt: skip
    after = [{"question": "Q?", "answers": ["a"], "answer": "It is a.", "format": True, "fact": True}]
    summary = {"task": {"name": "concise_qa", "checks": {"format": "f", "fact": "g"}}}
    summary |= {"task_before": {"format": 0.0, "fact": 1.0}, "task_after": {"format": 1.0, "fact": 1.0}}
    summary |= {"task_answers_before": before, "task_answers_after": after}
    path = write_answers(summary, str(tmp_path))
    assert "task_answers_before" not in summary and summary["task_examples_after"] == after
    line = json.loads(Path(path).read_text())
    assert line["answer_before"] == before[0]["answer"] and line["answer_after"] == "It is a."
    assert (line["format_before"], line["format_after"], line["fact_after"]) == (False, True, True)
    assert task_rows(summary) == [
        ("format, greedy answers (held-out)", 0.0, 1.0),
        ("fact, greedy answers (held-out)", 1.0, 1.0),
    ]


def test_a_possessive_states_the_answer():
    assert states_answer("Hamlet is one of William Shakespeare's plays.", ["William Shakespeare", "Shakespeare"])
    assert not states_answer("It's hot.", ["S"])
