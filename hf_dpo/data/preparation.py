"""Preference rows -> tokenized rows: validation, counted drops, and the unrolling of pairs for unpaired losses.

A row has ``prompt``, ``chosen`` and ``rejected``, either as strings or as chat messages (see :mod:`hf_dpo.data.formats`
for every accepted shape); how one row becomes token ids (chat templates, one EOS, one BOS, truncation) is in
:mod:`hf_dpo.data.tokenization`. The output row holds ``prompt_input_ids``, ``chosen_input_ids`` and
``rejected_input_ids``; the raw text columns are removed, other columns stay.

For an unpaired loss (``loss_type="kto"`` or ``"apo_zero_unpaired"``, see :func:`hf_dpo.losses.is_unpaired`) a row
has ``prompt``, ``completion`` and ``label`` (a bool: whether the completion is desirable) and becomes
``prompt_input_ids``, ``completion_input_ids`` and ``label``. Pairs are taken too and unrolled as TRL's
``unpair_preference_dataset`` does: within each run of 1000 pairs, their chosen completions (desirable) then their
rejected ones (undesirable), each with its pair's prompt and other columns.

Rows whose prompt leaves no room for a completion within ``max_length``, and pairs whose completions are identical
(also after truncation; both rows, once unrolled), are dropped; the counts are logged and returned.

With a processor as the processing class, rows may carry images (``images``/``image``): they are tokenized by
:mod:`hf_dpo.data.vision`, their images kept in their column for the collator, and a row whose truncation would cut
its image tokens is dropped and counted too. A dataset of several answers per prompt (a
``completions`` column) is prepared by :mod:`hf_dpo.data.list_preparation`.
"""

from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_dpo.data.columns import ID_COLUMNS, LABEL_COLUMN, TOKEN_COLUMNS, UNPAIRED_ID_COLUMNS
from hf_dpo.data.dataset_checks import apply_column_mapping, check_columns, is_paired, rows_from_list, select_split
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.formats import MESSAGE_COLUMNS
from hf_dpo.data.images import image_column
from hf_dpo.data.lists import is_list_data, largest_id, token_count
from hf_dpo.data.preparation_stats import PreparationStats
from hf_dpo.data.tokenization import (
    DROPPED_IDENTICAL,
    DROPPED_NO_ROOM,
    KEPT,
    STATUS_COLUMN,
    TRUNCATED,
    tokenize_row,
    tokenize_unpaired_row,
    tokenizer_adds_bos,
)
from hf_dpo.data.unpaired import unrolled_pairs
from hf_dpo.data.vision import DROPPED_IMAGE_CUT, is_processor, text_tokenizer, tokenize_vision_row
from hf_dpo.losses import is_unpaired

logger = logging.getLogger(__name__)


_DROP_REASONS = {
    DROPPED_NO_ROOM: "no room for a completion within max_length",
    DROPPED_IDENTICAL: "identical pair",
    DROPPED_IMAGE_CUT: "the length limits would cut its image tokens",
}


def _keep_streamed_row(row: dict[str, Any], index: int, split: str) -> bool:
    status = row[STATUS_COLUMN]
    if status in _DROP_REASONS:
        logger.warning("%s set: dropped streamed row %d (%s)", split, index, _DROP_REASONS[status])
    return status in (KEPT, TRUNCATED)


def _renamed(dataset: Any, args: Any, split: str, images: bool = False) -> tuple[Dataset | IterableDataset, list[str]]:
    """The split's rows as a Dataset or IterableDataset with ``column_mapping`` applied, and its column names."""
    column_mapping = getattr(args, "column_mapping", None)
    if isinstance(dataset, list):
        dataset = rows_from_list(dataset, split, column_mapping, images=images)
    else:
        dataset = apply_column_mapping(select_split(dataset, split), column_mapping, split)
    columns = dataset.column_names
    if columns is None and isinstance(dataset, IterableDataset):
        columns = list(next(iter(dataset), {}))  # a stream without declared features: look at its first row
    return dataset, list(columns or ())


def _counted(
    tokenized: Dataset, split: str, unpaired: bool, pairs_unrolled: int | None, images: bool = False
) -> PreparationStats:
    statuses = list(tokenized[STATUS_COLUMN])
    kept = [status in (KEPT, TRUNCATED) for status in statuses]
    desirable = undesirable = None
    if unpaired:
        labels = list(tokenized[LABEL_COLUMN])
        desirable = sum(keep and label for keep, label in zip(kept, labels, strict=True))
        undesirable = sum(kept) - desirable
    return PreparationStats(
        split=split,
        rows_in=len(statuses),
        kept=sum(kept),
        truncated=statuses.count(TRUNCATED),
        dropped_no_room=statuses.count(DROPPED_NO_ROOM),
        dropped_identical=statuses.count(DROPPED_IDENTICAL),
        desirable=desirable,
        undesirable=undesirable,
        pairs_unrolled=pairs_unrolled,
        dropped_image_cut=statuses.count(DROPPED_IMAGE_CUT) if images else None,
    )


def _tokenize_settings(renderer: Any, tokenizer: Any, args: Any) -> dict[str, Any]:
    """The keyword arguments every row tokenizer takes: what renders the row (a tokenizer, or a processor for rows it
    renders), whether the tokenizer adds a BOS, and the length limits."""
    return {
        "tokenizer": renderer,
        "add_bos": tokenizer_adds_bos(tokenizer),
        "max_length": args.max_length,
        "max_prompt_length": args.max_prompt_length,
        "max_completion_length": args.max_completion_length,
        "truncation_mode": args.truncation_mode,
    }


def prepare_dataset(
    dataset: Dataset | IterableDataset | list[dict[str, Any]],
    tokenizer: Any,
    args: Any,
    split: str = "train",
) -> tuple[Dataset | IterableDataset, PreparationStats | None]:
    """Tokenize a preference dataset for :class:`~hf_dpo.DPODataCollator`, or for an unpaired loss (``args.loss_type``
    in :data:`~hf_dpo.losses.UNPAIRED_LOSS_TYPES`) into unpaired rows (see the module docstring and
    :mod:`hf_dpo.data.formats` for the accepted shapes).

    Already tokenized datasets (with ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids``, or for an
    unpaired loss ``prompt_input_ids``, ``completion_input_ids``, ``label``) pass through unchanged (tokenized pairs
    are unrolled for an unpaired loss). Returns the dataset and its :class:`PreparationStats` (``None`` for a
    streamed or already tokenized dataset, whose rows are not counted). ``tokenizer`` may be a processor: then rows
    may carry images (see :mod:`hf_dpo.data.vision`).
    """
    reads_images = is_processor(tokenizer)
    dataset, columns = _renamed(dataset, args, split, images=reads_images)
    if is_list_data(columns):  # several answers per prompt: hf_dpo.data.lists
        from hf_dpo.data.list_preparation import prepare_lists  # it builds on this module's counts

        return prepare_lists(dataset, columns, tokenizer, args, split)
    unpaired = is_unpaired(args.loss_type)
    unroll = unpaired and is_paired(columns)
    if unpaired and {*UNPAIRED_ID_COLUMNS, LABEL_COLUMN} <= set(columns):
        return dataset, None
    if set(ID_COLUMNS) <= set(columns):
        return (unrolled_pairs(dataset, split) if unroll else dataset), None
    check_columns(columns, split, unpaired, images=reads_images)
    images = image_column(columns) is not None
    if images and unpaired:
        raise DataFormatError(
            f"the {split} dataset has images and loss_type={args.loss_type!r} trains on unpaired rows; rows with "
            "images train with the paired losses only (TRL's KTOTrainer takes no images either)"
        )
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise DataFormatError(f"the {split} dataset has no rows")
    processor, tokenizer = tokenizer, text_tokenizer(tokenizer)
    if tokenizer.eos_token_id is None:
        raise DataFormatError("the tokenizer has no eos_token: set tokenizer.eos_token so completions can end")
    # a processor renders every pair with a prompt column, images or not: its chat template is the model's
    by_processor = reads_images and not unpaired and "prompt" in columns

    fn_kwargs = _tokenize_settings(processor if by_processor else tokenizer, tokenizer, args)
    tokenize = tokenize_unpaired_row if unpaired and not unroll else tokenize_row
    tokenize = tokenize_vision_row if by_processor else tokenize
    text_columns = [name for name in MESSAGE_COLUMNS if name in columns]
    map_kwargs: dict[str, Any] = {"fn_kwargs": fn_kwargs, "with_indices": True, "remove_columns": text_columns}
    if isinstance(dataset, IterableDataset):
        tokenized = dataset.map(tokenize, **map_kwargs)
        # A stream has no end to count at, so each dropped row is logged as it passes.
        tokenized = tokenized.filter(_keep_streamed_row, with_indices=True, fn_kwargs={"split": split})
        tokenized = unrolled_pairs(tokenized, split) if unroll else tokenized
        return tokenized.remove_columns(STATUS_COLUMN), None

    tokenized = dataset.map(tokenize, num_proc=args.dataset_num_proc, desc=f"Tokenizing {split} set", **map_kwargs)
    tokenized = unrolled_pairs(tokenized, split) if unroll else tokenized
    stats = _counted(tokenized, split, unpaired, len(dataset) if unroll else None, images)
    if stats.kept < stats.rows_in:
        tokenized = tokenized.filter(lambda status: status in (KEPT, TRUNCATED), input_columns=STATUS_COLUMN)
    (logger.warning if stats.kept < stats.rows_in or stats.truncated else logger.info)(stats.summary())
    if stats.kept == 0:
        raise DataFormatError(f"no usable rows in the {split} set: {stats.summary()}")
    return tokenized.remove_columns(STATUS_COLUMN), stats


def with_lengths(dataset: Any, column: str) -> Any:
    """``dataset`` with each row's token count (prompt and completions) in ``column``, which Trainer's
    ``train_sampling_strategy="group_by_length"`` reads to batch rows of similar lengths (less padding)."""
    if not isinstance(dataset, Dataset) or column in dataset.column_names:
        return dataset
    id_columns = [name for name in TOKEN_COLUMNS if name in dataset.column_names]
    lengths = [sum(map(token_count, parts)) for parts in zip(*(dataset[name] for name in id_columns))]
    return dataset.add_column(column, lengths)


def check_vocabulary(model: Any, tokenizer: Any, dataset: Any) -> None:
    """Token ids the model has no embedding for would index out of range deep inside the forward pass."""
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= embeddings or not isinstance(dataset, Dataset):
        return
    id_columns = [name for name in TOKEN_COLUMNS if name in dataset.column_names]  # pairs or unpaired rows
    for index, row in enumerate(dataset.select_columns(id_columns)):
        for name in id_columns:
            largest = largest_id(row[name])  # a list row's answers are a list of id lists
            if largest is not None and largest >= embeddings:
                raise ValueError(
                    f"row {index}, field {name!r}: token id {largest} is past the model's {embeddings} "
                    f"embeddings (the tokenizer has {len(tokenizer)} tokens); call "
                    "model.resize_token_embeddings(len(tokenizer)) before training"
                )


class DataStatsCallback(TrainerCallback, ExportableState):
    """Carries the data-preparation counts into trainer_state.json (under ``stateful_callbacks``), where they
    survive checkpoints and the model card can find them."""

    def __init__(self, stats: dict[str, dict[str, Any]]):
        self.stats = stats

    def state(self) -> dict[str, Any]:
        return {"args": {"stats": self.stats}, "attributes": {}}
