"""A dataset of several answers per prompt -> tokenized list rows, with the counts of what was dropped or cut.

:func:`hf_dpo.data.preparation.prepare_dataset` hands a split here when it has a ``completions`` column (see
:mod:`hf_dpo.data.lists` for the rows, their checks and what is an error or a counted skip). Pairs need nothing of
this: in a run on lists, a pair is a list of 2 as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from datasets import Dataset, IterableDataset

from hf_dpo.data.columns import COMPLETIONS_COLUMN, LIST_TEXT_COLUMNS, SCORES_COLUMN
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.formats import MESSAGE_COLUMNS
from hf_dpo.data.images import image_column
from hf_dpo.data.lists import (
    CAPPED_COLUMN,
    DROPPED_TIED,
    DROPPED_TOO_FEW,
    DUPLICATES_COLUMN,
    tokenize_list_row,
)
from hf_dpo.data.preparation_stats import PreparationStats
from hf_dpo.data.tokenization import (
    DROPPED_IDENTICAL,
    DROPPED_NO_ROOM,
    KEPT,
    STATUS_COLUMN,
    TRUNCATED,
    tokenizer_adds_bos,
)
from hf_dpo.losses import is_unpaired

logger = logging.getLogger(__name__)

REASONS = {
    DROPPED_NO_ROOM: "no room for a completion within max_length",
    DROPPED_IDENTICAL: "its answers are identical after truncation",
    DROPPED_TOO_FEW: "fewer than two answers",
    DROPPED_TIED: "every answer tied",
}
HELPER_COLUMNS = (STATUS_COLUMN, DUPLICATES_COLUMN, CAPPED_COLUMN)


@dataclass
class ListPreparationStats(PreparationStats):
    """What preparing one split of lists did. ``dropped_identical`` counts every row left without a preference
    (fewer than two answers, all tied, or identical after truncation: broken down below), so the model card's
    totals read as for pairs; answers are counted over the rows given and the rows kept."""

    too_few_answers: int = 0
    all_tied: int = 0
    answers_in: int = 0
    answers_kept: int = 0
    duplicate_answers: int = 0
    capped_rows: int = 0
    capped_answers: int = 0

    def summary(self) -> str:
        identical = self.dropped_identical - self.too_few_answers - self.all_tied
        capped = (
            f"; max_completions_per_prompt left out {self.capped_answers} answers of {self.capped_rows} rows"
            if self.capped_rows
            else ""
        )
        return (
            f"{self.split} set: {self.kept} of {self.rows_in} lists kept ({self.truncated} of them truncated), "
            f"{self.answers_kept} answers ({self.answers_kept / max(self.kept, 1):.2f} per prompt) of the "
            f"{self.answers_in} given; dropped {self.dropped_no_room} whose prompt leaves no room for a completion "
            f"within max_length, {self.too_few_answers} with fewer than two answers, {self.all_tied} whose answers "
            f"all tie, {identical} whose answers are identical after truncation; {self.duplicate_answers} repeated "
            f"answers dropped{capped}"
        )


def check_list_options(args: Any, split: str) -> None:
    """The options that read a pair's two sides have no meaning on a list: refused by name."""
    if is_unpaired(args.loss_type):
        raise DataFormatError(
            f"the {split} dataset holds lists of answers ('completions'); loss_type {args.loss_type!r} trains on "
            "unpaired rows (prompt, completion, label): use a list loss (plackett_luce, all_pairs, best_vs_rest, nca) "
            "or a paired one"
        )
    for name, used in (("use_weighting", args.use_weighting), ("ld_alpha", args.ld_alpha is not None)):
        if used:
            raise DataFormatError(
                f"{name} weighs the two answers of a pair against each other; the {split} dataset holds lists of "
                f"answers: turn {name} off"
            )


def _counted(tokenized: Dataset, split: str, given: list[int]) -> ListPreparationStats:
    statuses = list(tokenized[STATUS_COLUMN])
    kept = [status in (KEPT, TRUNCATED) for status in statuses]
    answers = [len(row) for row, keep in zip(tokenized[COMPLETIONS_COLUMN], kept) if keep]
    capped = list(tokenized[CAPPED_COLUMN])
    no_preference = (DROPPED_IDENTICAL, DROPPED_TOO_FEW, DROPPED_TIED)
    return ListPreparationStats(
        split=split,
        rows_in=len(statuses),
        kept=sum(kept),
        truncated=statuses.count(TRUNCATED),
        dropped_no_room=statuses.count(DROPPED_NO_ROOM),
        dropped_identical=sum(status in no_preference for status in statuses),
        too_few_answers=statuses.count(DROPPED_TOO_FEW),
        all_tied=statuses.count(DROPPED_TIED),
        answers_in=sum(given),
        answers_kept=sum(answers),
        duplicate_answers=sum(tokenized[DUPLICATES_COLUMN]),
        capped_rows=sum(count > 0 for count in capped),
        capped_answers=sum(capped),
    )


def _keep_streamed_row(row: dict[str, Any], index: int, split: str) -> bool:
    status = row[STATUS_COLUMN]
    if status in REASONS:
        logger.warning("%s set: dropped streamed row %d (%s)", split, index, REASONS[status])
    return status in (KEPT, TRUNCATED)


def prepare_lists(
    dataset: Dataset | IterableDataset, columns: list[str], tokenizer: Any, args: Any, split: str
) -> tuple[Dataset | IterableDataset, ListPreparationStats | None]:
    """Tokenize a split of list rows (``column_mapping`` already applied); an already tokenized one passes as it is.
    Returns the rows and their counts (``None`` for a stream or tokenized rows)."""
    check_list_options(args, split)
    if image_column(columns) is not None:  # the list layout reads text only: images would be ignored
        raise DataFormatError(
            f"the {split} dataset holds lists of answers ('completions') with images; lists of answers train on "
            "text only: give rows with images as prompt/chosen/rejected pairs"
        )
    if COMPLETIONS_COLUMN in columns:
        if not {"prompt_input_ids", SCORES_COLUMN} <= set(columns):
            raise DataFormatError(
                f"the {split} dataset has tokenized {COMPLETIONS_COLUMN!r} but not 'prompt_input_ids' and "
                f"{SCORES_COLUMN!r} (each answer's score, best first)"
            )
        return dataset, None
    if "prompt" not in columns:
        raise DataFormatError(
            f"the {split} dataset has 'completions' but no 'prompt' column; it has {columns}. Map one with "
            "column_mapping, e.g. column_mapping={'instruction': 'prompt'}"
        )
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise DataFormatError(f"the {split} dataset has no rows")
    if tokenizer.eos_token_id is None:
        raise DataFormatError("the tokenizer has no eos_token: set tokenizer.eos_token so completions can end")
    fn_kwargs = {
        "tokenizer": tokenizer,
        "add_bos": tokenizer_adds_bos(tokenizer),
        **{
            name: getattr(args, name, None)
            for name in ("max_completions_per_prompt", "score_column", "ranking_column")
        },
        "max_length": args.max_length,
        "max_prompt_length": args.max_prompt_length,
        "max_completion_length": args.max_completion_length,
        "truncation_mode": args.truncation_mode,
    }
    raw = [name for name in ("prompt", *LIST_TEXT_COLUMNS, *MESSAGE_COLUMNS) if name in columns]
    map_kwargs: dict[str, Any] = {"fn_kwargs": fn_kwargs, "with_indices": True, "remove_columns": raw}
    if isinstance(dataset, IterableDataset):
        tokenized = dataset.map(tokenize_list_row, **map_kwargs)
        tokenized = tokenized.filter(_keep_streamed_row, with_indices=True, fn_kwargs={"split": split})
        return tokenized.remove_columns(list(HELPER_COLUMNS)), None
    given = [len(answers) if isinstance(answers, list) else 0 for answers in dataset["completions"]]
    tokenized = dataset.map(
        tokenize_list_row, num_proc=args.dataset_num_proc, desc=f"Tokenizing {split} lists", **map_kwargs
    )
    stats = _counted(tokenized, split, given)
    if stats.kept < stats.rows_in:
        tokenized = tokenized.filter(lambda status: status in (KEPT, TRUNCATED), input_columns=STATUS_COLUMN)
    dropped_or_cut = stats.kept < stats.rows_in or stats.truncated or stats.duplicate_answers or stats.capped_rows
    (logger.warning if dropped_or_cut else logger.info)(stats.summary())
    if stats.kept == 0:
        raise DataFormatError(f"no usable rows in the {split} set: {stats.summary()}")
    return tokenized.remove_columns(list(HELPER_COLUMNS)), stats
