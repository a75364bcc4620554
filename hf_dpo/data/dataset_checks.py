"""Checks of a whole dataset before its rows are read: which split, the column mapping, the columns a run needs,
and a list of dicts turned into a Dataset with errors that name the row and field (see :mod:`hf_dpo.data.formats`
for the rows themselves)."""

from __future__ import annotations

import inspect
from typing import Any

import pyarrow as pa
from datasets import Dataset, DatasetDict, IterableDatasetDict, concatenate_datasets

from hf_dpo.data.columns import ID_COLUMNS, IMAGE_COLUMNS, LABEL_COLUMN, LIST_TEXT_COLUMNS, UNPAIRED_ID_COLUMNS
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.formats import (
    MESSAGE_COLUMNS,
    TEXT_COLUMNS,
    UNPAIRED_COLUMNS,
    check_encodings,
    normalise_row,
    normalise_unpaired_row,
)
from hf_dpo.data.images import image_values
from hf_dpo.data.tool_calls import TOOLS_COLUMN
from hf_dpo.data.vision import check_vision_pair

EVAL_SPLIT_NAMES = ("test", "validation", "eval", "dev")


# datasets >= 4.7 can keep free-form nested dicts as JSON (datasets.Json) instead of padding them into one struct
_KEEPS_JSON = "on_mixed_types" in inspect.signature(Dataset.from_dict).parameters


def select_split(dataset: Any, split: str) -> Any:
    """A split of a DatasetDict: ``train`` for training, the first of test/validation/eval/dev for evaluation."""
    if not isinstance(dataset, DatasetDict | IterableDatasetDict):
        return dataset
    wanted = ("train",) if split == "train" else EVAL_SPLIT_NAMES
    for name in wanted:
        if name in dataset:
            return dataset[name]
    raise DataFormatError(
        f"the {split} dataset is a DatasetDict with splits {list(dataset)} and none is named "
        f"{' or '.join(wanted)}; pass one split, e.g. dataset[{next(iter(dataset), 'train')!r}]"
    )


def _checked_renames(mapping: dict[str, str], columns: list[str] | None, split: str) -> dict[str, str]:
    bad_targets = sorted(set(mapping.values()) - {*TEXT_COLUMNS, *UNPAIRED_COLUMNS, *LIST_TEXT_COLUMNS})
    if bad_targets:
        raise DataFormatError(
            f"column_mapping maps onto {bad_targets}; targets must be among {list(TEXT_COLUMNS)} (pairs), "
            f"{list(UNPAIRED_COLUMNS)} (unpaired rows) or {['prompt', *LIST_TEXT_COLUMNS]} (lists of answers)"
        )
    if columns is not None:
        missing = sorted(set(mapping) - set(columns))
        if missing:
            raise DataFormatError(f"column_mapping names {missing}, which the {split} dataset lacks; it has {columns}")
    renames = {source: target for source, target in mapping.items() if source != target}
    targets = list(renames.values())
    clashes = sorted({t for t in targets if targets.count(t) > 1 or (columns and t in columns and t not in renames)})
    if clashes:
        raise DataFormatError(
            f"column_mapping would create {clashes} twice (two sources, or a column of that name already exists "
            f"and is not renamed away); columns: {columns}"
        )
    return renames


def apply_column_mapping(dataset: Any, mapping: dict[str, str] | None, split: str) -> Any:
    """Rename columns per ``mapping`` ({source: prompt|chosen|rejected|completion|label})."""
    if not mapping:
        return dataset
    renames = _checked_renames(mapping, dataset.column_names, split)
    return dataset.rename_columns(renames) if renames else dataset


def _refuse_images(columns: list[str], split: str) -> None:
    # Training on the text of an image dataset would run without a word of warning and teach the model answers
    # about images it never saw.
    for name in IMAGE_COLUMNS:
        if name in columns:
            raise DataFormatError(
                f"the {split} dataset has an {name!r} column, and the processing class is a tokenizer (a text-only "
                f"model): the images would be ignored; to train on them, give a vision-language model and its "
                f"processor (processing_class=AutoProcessor.from_pretrained(...)); to train on the text alone, drop "
                f"the column first (dataset.remove_columns({name!r}), or the key from each row of a list)"
            )


def is_paired(columns: list[str]) -> bool:
    """Whether the columns are those of preference pairs, as text or tokenized (else unpaired rows, or unknown)."""
    return bool({"chosen", "rejected", "chosen_input_ids", "rejected_input_ids"} & set(columns))


def _check_unpaired_columns(columns: list[str], split: str) -> None:
    missing = [name for name in UNPAIRED_COLUMNS if name not in columns]
    if missing:
        candidates = [name for name in columns if name not in UNPAIRED_COLUMNS]
        raise DataFormatError(
            f"the {split} dataset has no column(s) {missing}; it has {columns}. Unpaired rows need 'prompt', "
            "'completion' and 'label' (a bool: whether the completion is desirable); prompt/chosen/rejected pairs "
            "are taken too (each unrolled into a desirable and an undesirable row). Map other names with "
            f"column_mapping, e.g. column_mapping={{{candidates[0] if candidates else 'answer'!r}: {missing[0]!r}}}"
        )


def check_columns(columns: list[str], split: str, unpaired: bool = False, images: bool = False) -> None:
    """The dataset must have chosen and rejected (and prompt, unless it is implicit), and no image column unless
    ``images`` (the processing class reads them); for an ``unpaired`` run (KTO) prompt, completion and label
    instead, or pairs."""
    if not images:
        _refuse_images(columns, split)
    if not is_paired(columns):
        if unpaired:
            _check_unpaired_columns(columns, split)
            return
        found = [name for name in ("completion", LABEL_COLUMN, *UNPAIRED_ID_COLUMNS[1:]) if name in columns]
        if found:
            raise DataFormatError(
                f"the {split} dataset has {found} columns and no chosen/rejected: rows of a prompt, one completion "
                "and a label are unpaired data; use loss_type='kto' (or 'apo_zero_unpaired') to train on them, or "
                "give prompt/chosen/rejected pairs"
            )
    missing = [name for name in ("chosen", "rejected") if name not in columns]
    if missing:
        candidates = [name for name in columns if name not in TEXT_COLUMNS]
        raise DataFormatError(
            f"the {split} dataset has no column(s) {missing}; it has {columns}. Rows need 'chosen' and 'rejected' "
            "(and 'prompt', unless both completions start with it), or 'prompt', 'completions' and 'scores' (or "
            "'ranking') for several answers per prompt. Map other names with column_mapping, e.g. "
            f"column_mapping={{{candidates[0] if candidates else 'question'!r}: 'prompt', ...}}"
        )


def rows_from_list(
    rows: list[Any], split: str, mapping: dict[str, str] | None = None, images: bool = False
) -> Dataset:
    """A Dataset from a list of dicts (``mapping`` applied), with our own message for rows Arrow cannot put in
    one table; image columns only with ``images`` (a processor reads them), their in-memory images kept exactly."""
    if not rows:
        raise DataFormatError(f"the {split} dataset has no rows")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataFormatError(f"row {index} of the {split} dataset: expected a dict, got {type(row).__name__}")
    if not images:
        _refuse_images(list(dict.fromkeys(key for row in rows for key in row)), split)  # before Arrow meets an image
    if mapping:
        renames = _checked_renames(mapping, list(rows[0]), split)
        rows = [{renames.get(key, key): value for key, value in row.items()} for row in rows]
    for index, row in enumerate(rows):
        check_encodings(row, index)  # Arrow would fail on invalid text with a message naming neither row nor field
    for name in MESSAGE_COLUMNS:
        kinds = [(index, type(row.get(name)).__name__) for index, row in enumerate(rows) if name in row]
        first_kind = kinds[0][1] if kinds else None
        for index, kind in kinds:
            if kind != first_kind:
                raise DataFormatError(
                    f"row {index}, field {name!r}: is {kind} while row {kinds[0][0]} is {first_kind}; one dataset "
                    "must use one format (all text or all chat messages)"
                )
    for index, row in enumerate(rows):
        # Check first what Arrow would report without naming a row or field. Rows without both completions are
        # left to the column checks that follow column_mapping.
        if {"chosen", "rejected"} <= set(row) and not set(ID_COLUMNS) <= set(row):
            by_processor = images and ("prompt" in row or set(IMAGE_COLUMNS) & set(row))  # as prepare_dataset reads it
            check_vision_pair(row, index) if by_processor else normalise_row(row, index)
        elif set(UNPAIRED_COLUMNS) <= set(row) and not (images and set(IMAGE_COLUMNS) & set(row)):
            normalise_unpaired_row(row, index)  # (unpaired rows with images are refused once the columns are known)
    return _table(rows, split)


def _table(rows: list[dict[str, Any]], split: str) -> Dataset:
    """The rows as a Dataset, one column at a time (every key of any row a column), so an error names its column.

    Chat messages, tool specs and template arguments are built with ``on_mixed_types="use_json"``: dicts of
    different shapes keep their own keys instead of getting each other's set to None (see the module docstring).
    """
    columns = []
    for name in dict.fromkeys(key for row in rows for key in row):
        values = [row.get(name) for row in rows]
        free_form = _KEEPS_JSON and name in (*MESSAGE_COLUMNS, TOOLS_COLUMN, "chat_template_kwargs", "completions")
        if name in IMAGE_COLUMNS:
            values = image_values(values)
        try:
            columns.append(Dataset.from_dict({name: values}, **({"on_mixed_types": "use_json"} if free_form else {})))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise DataFormatError(
                f"the {split} rows cannot form one table: column {name!r} holds different types in different rows "
                f"({error})"
            ) from None
    return concatenate_datasets(columns, axis=1)
