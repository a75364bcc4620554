"""Rows of several answers to one prompt, ranked or scored: their checks, and one row's text to token ids.

Accepted rows (after ``column_mapping``), the prompt and answers as text or chat messages (an answer to a chat
prompt may be a bare string, the assistant's turn), as pairs take them (:mod:`hf_dpo.data.formats`):

- ``{"prompt", "completions": [...], "scores": [...]}``: one score per answer, higher is better, ties allowed;
- ``{"prompt", "completions": [...], "ranking": [...]}``: one rank per answer, 1 the best, ties allowed;
- answers given as dicts (UltraFeedback's ``completions``, Nectar's ``answers``): each answer's text under one of
  :data:`TEXT_KEYS` and its score under the key ``score_column`` names (or its rank under ``ranking_column``).

Errors (:class:`DataFormatError`, naming the row and the field): a missing prompt, answers that are not a list, a
list of scores or ranks whose length differs from the answers', a score that is not a finite number (NaN, inf, None,
text), a rank that is not an integer >= 1, both scores and a ranking, the same answer twice with different scores
(the row contradicts itself), and every problem a pair's text or messages can have.

Counted skips (the row is dropped and counted, as a pair whose answers are identical is): fewer than two answers, all
answers tied, and answers left identical by truncation. A later copy of an answer with the same score is dropped
and counted; with ``max_completions_per_prompt``, a longer list keeps its best, its worst and an even spread between.

A tokenized list row holds ``prompt_input_ids``, ``completions_input_ids`` (each answer's ids, best first) and
``completion_scores`` (their scores; a ranking becomes negated ranks). Each answer is tokenized as a pair's completion
is: one EOS ends it, and truncation cuts each (:mod:`hf_dpo.data.tokenization`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from hf_dpo.data.columns import COMPLETIONS_COLUMN, SCORES_COLUMN
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.formats import _checked, _without_none
from hf_dpo.data.tokenization import DROPPED_IDENTICAL, STATUS_COLUMN, _tokenize, render

TEXT_KEYS = ("response", "answer", "completion", "text")  # an answer given as a dict: its text (one of them)
DROPPED_TOO_FEW, DROPPED_TIED = 4, 5  # statuses beside tokenization's KEPT, TRUNCATED, DROPPED_*
DUPLICATES_COLUMN = "_hf_dpo_duplicates"  # per row: answers dropped as copies of another
CAPPED_COLUMN = "_hf_dpo_capped"  # per row: answers left out by max_completions_per_prompt


def is_list_data(columns: Any) -> bool:
    """Whether the columns hold lists of answers (raw or tokenized)."""
    return bool({"completions", COMPLETIONS_COLUMN} & set(columns or ()))


def holds_lists(*datasets: Any) -> bool:
    """Whether any of the (tokenized) datasets, or of the named sets of a dict, holds lists of answers; a stream
    without declared columns is judged by its first row."""
    for dataset in datasets:
        for split in dataset.values() if isinstance(dataset, dict) else [dataset]:
            if split is None:
                continue
            columns = getattr(split, "column_names", None)
            if columns is None and hasattr(split, "__iter__"):
                columns = list(next(iter(split), {}))
            if is_list_data(columns):
                return True
    return False


def _answer_text(index: int, position: int, answer: dict[str, Any]) -> Any:
    found = [key for key in TEXT_KEYS if answer.get(key) is not None]
    if len(found) != 1:
        problem = "none of" if not found else f"several of ({', '.join(found)})"
        raise DataFormatError(
            f"row {index}, field 'completions[{position}]': an answer given as a dict needs its text under exactly one "
            f"of {', '.join(TEXT_KEYS)}; it has {problem} them (keys: {sorted(answer)})"
        )
    return answer[found[0]]


def _score(index: int, field: str, value: Any, rank: bool) -> float:
    """A finite score, or (``rank``) an integer rank >= 1 as its negation."""
    number = isinstance(value, numbers.Real | np.number) and not isinstance(value, bool | np.bool_)
    if rank:
        if not number or not float(value).is_integer() or value < 1:
            raise DataFormatError(
                f"row {index}, field {field!r}: a rank must be an integer >= 1 (1: the best), got {value!r}"
            )
        return -float(value)
    if not number or not math.isfinite(value):
        raise DataFormatError(
            f"row {index}, field {field!r}: a score must be a finite number, got {value!r}; fix or filter the rows "
            "without one (dataset.filter)"
        )
    return float(value)


def _scores(
    row: dict[str, Any], index: int, answers: list, score_column: str | None, ranking_column: str | None
) -> list[float]:
    """Each answer's score (higher is better), from the row's ``scores`` or ``ranking``, or from each answer dict."""
    sources = [name for name in ("scores", "ranking") if row.get(name) is not None]
    keys = [(key, rank) for key, rank in ((score_column, False), (ranking_column, True)) if key]
    if len(sources) + len(keys) != 1:
        given = [*sources, *(f"{'ranking' if rank else 'score'}_column={key!r}" for key, rank in keys)]
        raise DataFormatError(
            f"row {index}: give each answer's quality one way, a 'scores' column (higher is better) or a 'ranking' "
            "column (1 is the best), or for answers given as dicts score_column or ranking_column; got "
            f"{', '.join(given) or 'none'}"
        )
    if sources:
        name = sources[0]
        values = row[name]
        if not isinstance(values, list | tuple | np.ndarray) or len(values) != len(answers):
            length = len(values) if isinstance(values, list | tuple | np.ndarray) else type(values).__name__
            raise DataFormatError(
                f"row {index}, field {name!r}: expected one value per answer ({len(answers)}), got {length}"
            )
        return [_score(index, f"{name}[{k}]", value, name == "ranking") for k, value in enumerate(values)]
    key, rank = keys[0]
    scores = []
    for position, answer in enumerate(answers):
        if not isinstance(answer, dict) or key not in answer:
            raise DataFormatError(
                f"row {index}, field 'completions[{position}]': {'ranking' if rank else 'score'}_column={key!r} reads "
                f"each answer's {'rank' if rank else 'score'} from a dict; this answer is {type(answer).__name__}"
                + (f" with keys {sorted(answer)}" if isinstance(answer, dict) else "")
            )
        scores.append(_score(index, f"completions[{position}].{key}", answer[key], rank))
    return scores


def normalise_list_row(
    row: dict[str, Any], index: int, score_column: str | None = None, ranking_column: str | None = None
) -> tuple[dict[str, Any], list[str], list[float]]:
    """The row checked, as ``(row with 'prompt' and one field per answer, the answer fields' names, the scores)``;
    an answer repeated with the same score is dropped here (the caller counts it)."""
    if row.get("prompt") is None:  # a list of dicts gives a row without the key None
        raise DataFormatError(f"row {index}, field 'prompt': a list of answers needs its prompt; got None")
    answers = row.get("completions")
    if not isinstance(answers, list | tuple):
        raise DataFormatError(
            f"row {index}, field 'completions': expected a list of answers, got {type(answers).__name__}"
        )
    # Arrow gives every answer dict every key any of them has, None where it lacks it
    answers = [{k: v for k, v in a.items() if v is not None} if isinstance(a, dict) else a for a in answers]
    scores = _scores(row, index, answers, score_column, ranking_column)
    texts = [
        _answer_text(index, k, a) if isinstance(a, dict) and "role" not in a else a for k, a in enumerate(answers)
    ]
    texts = [_without_none(text) if isinstance(text, list) else text for text in texts]
    prompt = _without_none(row["prompt"]) if isinstance(row["prompt"], list) else row["prompt"]
    kept: dict[str, Any] = {"prompt": prompt}
    kept_scores, seen = [], {}
    for position, (text, score) in enumerate(zip(texts, scores)):
        key = repr(text)
        if key in seen:
            first, first_score = seen[key]
            if first_score != score:
                raise DataFormatError(
                    f"row {index}: answers {first} and {position} are the same text with different scores "
                    f"({first_score} and {score}); the row contradicts itself"
                )
            continue
        seen[key] = (position, score)
        kept[f"completions[{position}]"] = text
        kept_scores.append(score)
    for name in ("tools", "chat_template_kwargs"):
        if name in row:
            kept[name] = row[name]
    names = [name for name in kept if name.startswith("completions[")]
    return _checked(kept, index, tuple(names)), names, kept_scores


def spread(count: int, keep: int) -> list[int]:
    """Which of ``count`` answers, best first, to keep: the best, the worst and an even spread between.

    >>> spread(7, 4), spread(3, 4)
    ([0, 2, 4, 6], [0, 1, 2])
    """
    if count <= keep:
        return list(range(count))
    return [round(i * (count - 1) / (keep - 1)) for i in range(keep)]


def tokenize_list_row(
    row: dict[str, Any],
    index: int,
    tokenizer: Any,
    add_bos: bool,
    max_completions_per_prompt: int | None = None,
    score_column: str | None = None,
    ranking_column: str | None = None,
    **limits: Any,
) -> dict[str, Any]:
    """One raw list row -> ``prompt_input_ids``, ``completions_input_ids`` (best first), ``completion_scores``, a
    status and the counts of answers dropped as copies or over the cap."""
    checked, names, scores = normalise_list_row(row, index, score_column, ranking_column)
    duplicates = len(row["completions"]) - len(names)
    out = {"prompt_input_ids": [], COMPLETIONS_COLUMN: [], SCORES_COLUMN: [], DUPLICATES_COLUMN: duplicates}
    if len(names) < 2 or len(set(scores)) < 2:
        return {**out, STATUS_COLUMN: DROPPED_TOO_FEW if len(names) < 2 else DROPPED_TIED, CAPPED_COLUMN: 0}
    order = sorted(range(len(names)), key=lambda k: -scores[k])  # best first; equal scores keep their order
    kept = [order[k] for k in spread(len(order), max_completions_per_prompt or len(order))]
    prompt_text, texts = render(checked, index, tokenizer, [names[k] for k in kept])
    prompt_ids, completions, status = _tokenize(prompt_text, texts, index, tokenizer, add_bos, limits)
    answers, answer_scores = [], []
    for ids, k in zip(completions, kept):
        if ids in answers:  # truncation left it identical to a better-scored answer
            duplicates += 1
            continue
        answers.append(ids)
        answer_scores.append(scores[k])
    if len(answers) < 2:
        status = DROPPED_IDENTICAL
    elif len(set(answer_scores)) < 2:
        status = DROPPED_TIED
    return {
        **out,
        "prompt_input_ids": prompt_ids,
        COMPLETIONS_COLUMN: answers,
        SCORES_COLUMN: answer_scores,
        STATUS_COLUMN: status,
        DUPLICATES_COLUMN: duplicates,
        CAPPED_COLUMN: len(order) - len(kept),
    }


def token_count(ids: list) -> int:
    """Tokens in an id list, or in a list of them (a list row's answers)."""
    return sum(map(token_count, ids)) if ids and isinstance(ids[0], list) else len(ids)


def largest_id(ids: list) -> int | None:
    """The largest token id of an id list or a list of them (``None`` when empty)."""
    if ids and isinstance(ids[0], list):
        return max((value for value in map(largest_id, ids) if value is not None), default=None)
    return max(ids) if ids else None
