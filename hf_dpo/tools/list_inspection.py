"""``hf-dpo inspect`` on rows of several answers per prompt: each list's answers in the order training ranks them,
with their scores, tokenized exactly as the trainer tokenizes them, and the split's counts.

    hf-dpo inspect recipes/listwise_demo.yaml --rows 2

Each row shows its prompt once, then every answer best first as ``score │⟦answer⟧``, ``[✂ N tokens]`` where truncation
cut it; a row training drops says why (fewer than two answers, every answer tied, answers left identical by the cut,
no room within ``max_length``). The pairs' warnings that apply to any completion (no EOS, an end-of-turn token that is
not the EOS, two BOS) are checked on every answer. Then the statuses, answers per prompt, and length histograms.
:mod:`hf_dpo.tools.inspection` hands a split here when it holds a ``completions`` column.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hf_dpo.data.columns import COMPLETIONS_COLUMN, SCORES_COLUMN
from hf_dpo.data.lists import (
    CAPPED_COLUMN,
    DROPPED_TIED,
    DROPPED_TOO_FEW,
    DUPLICATES_COLUMN,
    normalise_list_row,
    tokenize_list_row,
)
from hf_dpo.data.tokenization import KEPT, STATUS_COLUMN, TRUNCATED, tokenizer_adds_bos
from hf_dpo.tools.data_checks import LIMIT_NAMES, TokenizedRow, bos_warning, eos_warnings
from hf_dpo.tools.inspection_text import CLOSE, OPEN, STATUS_WORDS, histogram

LIST_STATUS_WORDS = {
    **STATUS_WORDS,
    3: "dropped: answers identical",
    DROPPED_TOO_FEW: "dropped: fewer than two answers",
}
LIST_STATUS_WORDS[DROPPED_TIED] = "dropped: every answer tied"
LIST_OPTIONS = ("max_completions_per_prompt", "score_column", "ranking_column")


@dataclass
class ListRow(TokenizedRow):
    """A list row as training tokenizes it: its answers (``answer 1``, ``answer 2``, ... best first) as the
    completions, their ``scores``, and how many answers were left out (copies, ``max_completions_per_prompt``)."""

    scores: dict[str, float] = field(default_factory=dict)
    dropped_answers: int = 0
    given: list[tuple[float, Any]] = field(default_factory=list)  # (score, answer) of a row dropped before tokenizing


def tokenize_list_for_inspection(row: dict[str, Any], index: int, tokenizer: Any, args: Any) -> ListRow:
    """A list row tokenized with ``args``' limits (as training does) and without them (to see what was cut)."""
    add_bos = tokenizer_adds_bos(tokenizer)
    options = {name: getattr(args, name, None) for name in LIST_OPTIONS}
    limits = {name: getattr(args, name) for name in LIMIT_NAMES}
    trained = tokenize_list_row(
        row, index, tokenizer, add_bos, **options, **limits, truncation_mode=args.truncation_mode
    )
    unlimited = dict.fromkeys(LIMIT_NAMES)
    full = tokenize_list_row(
        row, index, tokenizer, add_bos, **options, **unlimited, truncation_mode=args.truncation_mode
    )
    names = [f"answer {k + 1}" for k in range(len(trained[COMPLETIONS_COLUMN]))]
    untouched = list(full[COMPLETIONS_COLUMN])
    whole = []
    for ids in trained[COMPLETIONS_COLUMN]:  # each trained answer is the start of one full answer, in order
        match = next((k for k, other in enumerate(untouched) if other[: len(ids)] == ids), None)
        whole.append(untouched.pop(match) if match is not None else ids)
    return ListRow(
        index=index,
        status=trained[STATUS_COLUMN],
        prompt=trained["prompt_input_ids"],
        completions=dict(zip(names, trained[COMPLETIONS_COLUMN])),
        full_prompt=full["prompt_input_ids"],
        full_completions=dict(zip(names, whole)),
        scores=dict(zip(names, trained[SCORES_COLUMN])),
        dropped_answers=trained[DUPLICATES_COLUMN] + trained[CAPPED_COLUMN],
        given=_given(row, index, options) if trained[STATUS_COLUMN] in (DROPPED_TOO_FEW, DROPPED_TIED) else [],
    )


def _given(row: dict[str, Any], index: int, options: dict[str, Any]) -> list[tuple[float, Any]]:
    """The answers of a row with nothing to rank, as given."""
    checked, names, scores = normalise_list_row(row, index, options["score_column"], options["ranking_column"])
    return [(score, checked[name]) for name, score in zip(names, scores)]


def show_list_row(tokenized: ListRow, tokenizer: Any) -> list[str]:
    """The prompt once, then each answer best first with its score."""
    status = LIST_STATUS_WORDS.get(tokenized.status, str(tokenized.status))
    extra = f" · {tokenized.dropped_answers} answers left out (copies, cap)" if tokenized.dropped_answers else ""
    head = f"── row {tokenized.index} · {status} · prompt {len(tokenized.prompt)} tokens · {len(tokenized.completions)} answers{extra}"
    prompt_cut = len(tokenized.full_prompt) - len(tokenized.prompt)
    prompt = tokenizer.decode(tokenized.prompt, skip_special_tokens=False) + (
        f"[✂ {prompt_cut} prompt tokens]" if prompt_cut > 0 else ""
    )
    if tokenized.given:  # dropped before tokenizing: the answers as given
        return [head, *(f"  {score:>8g} │{answer!r:.100}" for score, answer in tokenized.given)]
    lines = [head, "  prompt   │" + prompt.replace("\n", "↵\n" + " " * 11 + "│")]
    for name, ids in tokenized.completions.items():
        cut = len(tokenized.full_completions[name]) - len(ids)
        text = f"{OPEN}{tokenizer.decode(ids, skip_special_tokens=False)}{CLOSE}" + (
            f"[✂ {cut} tokens]" if cut > 0 else ""
        )
        score = f"{tokenized.scores[name]:g}"
        lines.append(f"  {score:>8} │" + text.replace("\n", "↵\n" + " " * 11 + "│"))
    return lines


def list_inspect_lines(split: Any, tokenizer: Any, args: Any, words: str, options: argparse.Namespace) -> list[str]:
    """What ``hf-dpo inspect`` prints for a split of lists."""
    rows = []
    for index in range(min(max(options.scan, options.rows), len(split))):
        row = split[index]
        tokenized = tokenize_list_for_inspection(row, index, tokenizer, args)
        tokenized.warnings = [*eos_warnings(tokenized, tokenizer)]
        if message := bos_warning(row, tokenized, tokenizer):
            tokenized.warnings.append(("two_bos", message))
        rows.append(tokenized)
    lines = [
        f"hf-dpo inspect: {words}",
        f"lists of answers, best first with their scores; trained tokens are inside {OPEN} {CLOSE}",
        "",
    ]
    for tokenized in rows[: options.rows]:
        lines += [*show_list_row(tokenized, tokenizer), *(f"  ! {message}" for _, message in tokenized.warnings), ""]
    return lines + list_report_lines(rows, args)


def list_report_lines(rows: list[ListRow], args: Any) -> list[str]:
    statuses = Counter(row.status for row in rows)
    lines = [
        f"{len(rows)} rows scanned: "
        + ", ".join(f"{count} {LIST_STATUS_WORDS.get(s, s)}" for s, count in sorted(statuses.items())),
        f"share truncated: {statuses.get(TRUNCATED, 0) / max(len(rows), 1):.1%} "
        + ", ".join(f"{name}={getattr(args, name)}" for name in (*LIMIT_NAMES, "max_completions_per_prompt"))
        + f", truncation_mode={args.truncation_mode}",
    ]
    warnings = Counter(kind for row in rows for kind, _ in row.warnings)
    for kind, count in warnings.items():
        first = next(row for row in rows if any(k == kind for k, _ in row.warnings))
        lines.append(f"WARNING ({kind}, {count} answers, first: row {first.index}): {dict(first.warnings)[kind]}")
    kept = [row for row in rows if row.status in (KEPT, TRUNCATED)]
    answers = [len(row.completions) for row in kept]
    tokenized = [row for row in rows if not row.given]
    lengths = {
        "answers per prompt": answers,
        "prompt tokens (before any cut)": [len(row.full_prompt) for row in tokenized],
        "answer tokens (before any cut)": [len(ids) for row in tokenized for ids in row.full_completions.values()],
    }
    for name, values in lengths.items():
        mean = sum(values) / max(len(values), 1)
        lines += ["", f"{name}: mean {mean:.1f}, max {max(values, default=0)}", *histogram(values)]
    return lines
