"""Build the list version of the demo's concise-answer data: four answers per question, of graded quality.

The facts, question phrasings, statements and verbose wrappers are :mod:`hf_dpo.demo.make_data`'s. Each question
gets, best first (:data:`GRADES`, scored 3, 2, 1, 0):

- ``bare``: the answer alone ("Paris"), what the demo's checker accepts;
- ``sentence``: one sentence stating it ("The capital of France is Paris.");
- ``verbose``: that sentence wrapped in chatter, the pair data's rejected reply ("Great question! ...");
- ``wrong``: one sentence stating another fact's answer of the same category ("The capital of France is Rome.").

The answers are listed in a shuffled order with their scores; each row keeps the accepted ``answers`` and its
``category`` (and the question's ``subject``), so greedy generations are scored as the pair demo's are. The split is deterministic and stratified by
category, as the pair data's. Regenerate ``lists/train.jsonl`` and ``lists/test.jsonl`` with::

    python -m hf_dpo.demo.make_lists
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from hf_dpo.demo.make_data import (
    CATEGORIES,
    REJECTED_TEMPLATES,
    TEST_SIZE,
    Category,
    Fact,
    _test_quota,
    is_correct,
    normalise,
    write_jsonl,
)

FOLDER = Path(__file__).resolve().parent / "lists"
GRADES = ("bare", "sentence", "verbose", "wrong")  # best first
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
    wrong = _capitalise(template.format(**_fields(fact, wrong_answer(category, fact, rng))))
    return {
        "bare": fact.answer,
        "sentence": sentence,
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


def states_fact(text: str, accepted: list[str]) -> bool:
    """Whether an accepted answer appears in ``text`` as whole words ("Bangla" is not in "Bangladesh")."""
    words = normalise(text)
    return any(re.search(rf"(?<!\w){re.escape(normalise(answer))}(?!\w)", words) for answer in accepted)


def check_list_rows(rows: list[dict]) -> None:
    """Every row holds four different answers, one per grade, and the checker agrees with the grades: the bare
    answer is correct, no other is, and only the wrong one lacks the fact."""
    questions = [row["prompt"][0]["content"] for row in rows]
    if len(set(questions)) != len(questions):
        raise ValueError("duplicate questions")
    for row in rows:
        answers = answer_by_grade(row)
        if sorted(answers) != sorted(GRADES) or len(set(answers.values())) != len(GRADES):
            raise ValueError(f"a row needs four different answers, one per grade: {row}")
        if not is_correct(answers["bare"], row["answers"]):
            raise ValueError(f"the bare answer is not accepted: {row}")
        if any(is_correct(answers[grade], row["answers"]) for grade in GRADES[1:]):
            raise ValueError(f"an answer other than the bare one is accepted: {row}")
        # "the Czech Republic" names the answer "Czech", "sheep" is its own plural: the wrong answer is checked past
        # the subject's words
        subject_words = rf"(?<!\w){re.escape(row['subject'])}(?!\w)"
        wrong = re.sub(subject_words, " ", answers["wrong"], flags=re.I)
        states = [states_fact(answers["sentence"], row["answers"]), states_fact(answers["verbose"], row["answers"])]
        if states != [True, True] or states_fact(wrong, row["answers"]):
            raise ValueError(f"the sentence and verbose answers must state the fact and the wrong one must not: {row}")


def main() -> None:
    train, test = build_list_splits()
    check_list_rows(train + test)
    FOLDER.mkdir(exist_ok=True)
    write_jsonl(train, FOLDER / "train.jsonl")
    write_jsonl(test, FOLDER / "test.jsonl")
    print(f"wrote {len(train)} train and {len(test)} test lists of {len(GRADES)} answers to {FOLDER}")


if __name__ == "__main__":
    main()
