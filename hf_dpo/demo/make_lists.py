"""Build the list version of the demo's concise-answer data: four answers per question, of graded quality.

The facts, question phrasings, statements and verbose wrappers are :mod:`hf_dpo.demo.make_data`'s. Each question
gets, best first (:data:`GRADES`, scored 3, 2, 1, 0):

- ``sentence``: one short sentence stating the answer ("The capital of France is Paris."), the pair demo's chosen
  reply: the taught format, with the answer;
- ``bare``: the answer alone ("Paris"): right and short, but the form that makes a 135M model lose facts (the
  sentence that cues its recall is gone; README, "What the demo does"), so below the sentence;
- ``verbose``: the sentence wrapped in chatter, the pair demo's rejected reply ("Great question! ..."): right, in
  the wrong format;
- ``wrong``: one sentence stating another fact's answer of the same category ("The capital of France is Rome."):
  the format without the fact, worst, since a wrong fact is worse than any form of the right one.

Every answer is checked with the demo's own checks (:mod:`hf_dpo.demo.checks`, *format* and *fact*) when the data
is made, so the grades mean what the task report measures. The answers are listed in a shuffled order with their
scores; each row keeps the accepted ``answers`` and its ``category`` (and the question's ``subject``), so greedy
generations are scored as the pair demo's are. The split is deterministic and stratified by category, as the pair
data's. Regenerate ``lists/train.jsonl`` and ``lists/test.jsonl`` with::

    python -m hf_dpo.demo.make_lists
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from hf_dpo.demo.checks import MAX_WORDS, bare_answer, normalise, one_sentence, states_answer
from hf_dpo.demo.make_data import CATEGORIES, REJECTED_TEMPLATES, TEST_SIZE, Category, Fact, _test_quota, write_jsonl

FOLDER = Path(__file__).resolve().parent / "lists"
GRADES = ("sentence", "bare", "verbose", "wrong")  # best first (the module docstring says why)
SCORES = dict(zip(GRADES, (3.0, 2.0, 1.0, 0.0)))


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fields(fact: Fact, answer: str) -> dict[str, str]:
    x, _, y = fact.subject.partition("|")
    return {"x": x, "X": _capitalise(x), "y": y, "a": answer, "A": _capitalise(answer)}


def _accepted(fact: Fact) -> list[str]:
    return [fact.answer, *fact.aliases]


def wrong_answer(category: Category, fact: Fact, rng: random.Random) -> str:
    """Another fact's answer of the category that none of ``fact``'s accepted answers matches."""
    accepted = {normalise(answer) for answer in _accepted(fact)}
    others = [
        other.answer
        for other in category.facts
        if other is not fact and not accepted & {normalise(answer) for answer in _accepted(other)}
    ]
    return rng.choice(others)


def graded_answers(category: Category, fact: Fact, rng: random.Random) -> dict[str, str]:
    """The four answers to ``fact``'s question, by grade."""
    template = rng.choice(category.statements)
    sentence = _capitalise(template.format(**_fields(fact, fact.answer)))
    verbose = rng.choice(REJECTED_TEMPLATES).format(s=sentence, n=rng.choice(category.notes), a=fact.answer)
    wrong = _capitalise(template.format(**_fields(fact, wrong_answer(category, fact, rng)))).replace("..", ".")
    return {
        "sentence": sentence.replace("..", "."),  # an answer ending in "." ("Washington, D.C.") ends the sentence
        "bare": fact.answer,
        "verbose": _capitalise(verbose.replace("..", ".")),
        "wrong": wrong,
    }


def make_list_row(category: Category, fact: Fact, rng: random.Random) -> dict:
    """One list row for ``fact``: its question and its four graded answers in a shuffled order."""
    question = _capitalise(rng.choice(category.questions).format(**_fields(fact, fact.answer)))
    answers = graded_answers(category, fact, rng)
    order = list(GRADES)
    rng.shuffle(order)
    return {
        "prompt": [{"role": "user", "content": question}],
        "completions": [[{"role": "assistant", "content": answers[grade]}] for grade in order],
        "scores": [SCORES[grade] for grade in order],
        "answers": _accepted(fact),
        "category": category.name,
        "subject": fact.subject.partition("|")[0],
    }


def build_list_splits(seed: int = 0, test_size: int = TEST_SIZE) -> tuple[list[dict], list[dict]]:
    """Deterministic (train, test) list rows: ``test_size`` test rows stratified by category, the rest to train."""
    rng = random.Random(seed)
    per_category = {}
    for category in CATEGORIES:
        rows = [make_list_row(category, fact, rng) for fact in category.facts]
        rng.shuffle(rows)
        per_category[category.name] = rows
    quota = _test_quota({name: len(rows) for name, rows in per_category.items()}, test_size)
    train: list[dict] = []
    test: list[dict] = []
    for name, rows in per_category.items():
        test += rows[: quota[name]]
        train += rows[quota[name] :]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def answer_by_grade(row: dict) -> dict[str, str]:
    """A row's answers keyed by grade (from their scores)."""
    grades = {score: grade for grade, score in SCORES.items()}
    return {grades[score]: answer[0]["content"] for answer, score in zip(row["completions"], row["scores"])}


# What each grade must be under the demo's two checks, (format, fact): only the verbose answer fails the format,
# only the wrong one the fact
EXPECTED_CHECKS = {"sentence": (True, True), "bare": (True, True), "verbose": (False, True), "wrong": (True, False)}


def _without_subject(text: str, subject: str) -> str:
    """``text`` with the question's subject blanked: "the Czech Republic" names the answer "Czech", "sheep" is its own
    plural, so a wrong answer is checked for the fact past the subject's words."""
    return re.sub(rf"(?<!\w){re.escape(subject)}(?!\w)", " ", text, flags=re.I)


def check_list_rows(rows: list[dict]) -> None:
    """Raise ValueError unless every question is asked once and every row holds four different answers, one per
    grade, that the demo's checks (:mod:`hf_dpo.demo.checks`) grade as :data:`EXPECTED_CHECKS` says: format
    (one sentence) and fact (an accepted answer in it); the bare answer is the accepted answer alone and the
    sentence leaves room for the model's wording (at most ``MAX_WORDS - 3`` words), as in the pair data."""
    questions = [row["prompt"][0]["content"] for row in rows]
    duplicates = {question for question in questions if questions.count(question) > 1}
    if duplicates:
        raise ValueError(f"duplicate questions: {sorted(duplicates)}")
    for row in rows:
        answers = answer_by_grade(row)
        if sorted(answers) != sorted(GRADES) or len(set(answers.values())) != len(GRADES):
            raise ValueError(f"a row needs four different answers, one per grade: {row}")
        for grade, expected in EXPECTED_CHECKS.items():
            text = _without_subject(answers[grade], row["subject"]) if grade == "wrong" else answers[grade]
            found = (one_sentence(answers[grade], row["answers"]), states_answer(text, row["answers"]))
            if found != expected:
                raise ValueError(f"the {grade} answer reads as (format, fact) = {found}, not {expected}: {row}")
        if not bare_answer(answers["bare"], row["answers"]) or bare_answer(answers["sentence"], row["answers"]):
            raise ValueError(f"the bare answer must be the accepted answer alone, and only it: {row}")
        if len(answers["sentence"].split()) > MAX_WORDS - 3:  # room to spare for the model's wording
            raise ValueError(f"the sentence is longer than {MAX_WORDS - 3} words: {row}")


def main() -> None:
    train, test = build_list_splits()
    check_list_rows(train + test)
    FOLDER.mkdir(exist_ok=True)
    write_jsonl(train, FOLDER / "train.jsonl")
    write_jsonl(test, FOLDER / "test.jsonl")
    print(f"wrote {len(train)} train and {len(test)} test lists of {len(GRADES)} answers to {FOLDER}")


if __name__ == "__main__":
    main()
