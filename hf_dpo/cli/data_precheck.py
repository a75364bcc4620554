"""``hf-dpo train``'s look at the data before any model loads (a 7B model takes minutes to load; a bad row should not
wait for it): every row checked as training will read it, and the warnings of ``hf-dpo inspect`` logged once each.

    check_rows(train_split, "train", args, "pairs.jsonl")       # raises UserError naming the row and field
    log_data_warnings(train_split, tokenizer, args)            # inspect's warnings, one log line per kind

Rows are counted from 0, and the messages say so.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from hf_dpo.config.recipe import UserError

logger = logging.getLogger("hf_dpo")

WARNING_SCAN_ROWS = 2000  # rows tokenized for the warnings (hf-dpo inspect's default scan)
PAIR_FIELDS = ("prompt", "chosen", "rejected")
UNPAIRED_FIELDS = ("prompt", "completion", "label")


def check_rows(split: Any, split_name: str, args: Any, dataset_name: str) -> None:
    """Raise a :class:`UserError` for the first row training would refuse: columns missing after
    ``column_mapping`` (with the mapping to pass, as JSON), a missing field, or a value of the wrong shape; rows of
    several answers per prompt (a ``completions`` column) are checked as lists (:mod:`hf_dpo.data.lists`)."""
    from hf_dpo.data.columns import ID_COLUMNS, UNPAIRED_ID_COLUMNS
    from hf_dpo.data.dataset_checks import apply_column_mapping, check_columns, is_paired
    from hf_dpo.data.errors import DataFormatError
    from hf_dpo.data.formats import normalise_row, normalise_unpaired_row
    from hf_dpo.data.lists import is_list_data
    from hf_dpo.losses import is_unpaired

    where = f"{dataset_name}, {split_name} split"
    unpaired = is_unpaired(args.loss_type)
    try:
        mapped = apply_column_mapping(split, args.column_mapping, split_name)
        columns = list(mapped.column_names)
        if is_list_data(columns):
            _check_list_rows(mapped, columns, split_name, args)
            return
        _check_mapping_needed(columns, unpaired, where)
        check_columns(columns, split_name, unpaired)
        if set(ID_COLUMNS) <= set(columns) or set(UNPAIRED_ID_COLUMNS) <= set(columns):
            return  # tokenized rows: used as they are
        as_pairs = is_paired(columns)
        fields = [name for name in (PAIR_FIELDS if as_pairs else UNPAIRED_FIELDS) if name in columns]
        normalise = normalise_row if as_pairs else normalise_unpaired_row
        for index, row in enumerate(mapped):
            if missing := [name for name in fields if row[name] is None]:
                raise UserError(
                    f"{where}: row {index} (rows counted from 0) has no {missing[0]!r} (the key is missing or null; "
                    f"other rows have it)"
                )
            normalise(row, index)
    except DataFormatError as error:
        raise UserError(f"{where} (rows counted from 0): {error}") from error


def _check_list_rows(split: Any, columns: list[str], split_name: str, args: Any) -> None:
    """Lists of answers: the options a list refuses, then every row as :func:`hf_dpo.data.lists.normalise_list_row`
    reads it (tokenized lists are used as they are); raises :class:`DataFormatError` naming the row and field."""
    from hf_dpo.data.columns import COMPLETIONS_COLUMN
    from hf_dpo.data.list_preparation import check_list_options
    from hf_dpo.data.lists import normalise_list_row

    check_list_options(args, split_name)
    if COMPLETIONS_COLUMN in columns:
        return
    for index, row in enumerate(split):
        normalise_list_row(row, index, args.score_column, args.ranking_column)


def _check_mapping_needed(columns: list[str], unpaired: bool, where: str) -> None:
    """Missing pair columns, said with the ``--column_mapping`` JSON the command line takes (the library's own
    message shows a Python dict). Unpaired data is left to the library's checks."""
    from hf_dpo.data.dataset_checks import is_paired

    if unpaired or is_paired(columns) or "completion" in columns:
        return
    others = [name for name in columns if name not in PAIR_FIELDS]
    targets = PAIR_FIELDS[1:] if "prompt" in columns else PAIR_FIELDS
    example = json.dumps(dict(zip(others, targets)) or {"question": "prompt", "good": "chosen", "bad": "rejected"})
    raise UserError(
        f"{where} has no 'chosen' and 'rejected' columns; it has {', '.join(columns)}. Rows need 'chosen' and "
        f"'rejected' (and 'prompt', unless both start with it): map other names with --column_mapping '{example}' "
        f"(in a recipe: column_mapping: {example})"
    )


def log_data_warnings(split: Any, tokenizer: Any, args: Any, split_name: str = "train") -> dict[str, tuple]:
    """Tokenize the first :data:`WARNING_SCAN_ROWS` pairs as ``hf-dpo inspect`` does and log each of its warnings
    once, with how many rows have it; returns them (kind -> (rows, first row, message)). Rows that are not text
    pairs (tokenized, or unpaired) are not scanned."""
    from hf_dpo.data.dataset_checks import apply_column_mapping
    from hf_dpo.tools.inspection import scan

    split = apply_column_mapping(split, args.column_mapping, split_name)
    if not {"chosen", "rejected"} <= set(split.column_names):
        return {}
    report, _ = scan(split, tokenizer, args, WARNING_SCAN_ROWS)
    for kind, (count, first, message) in report.warnings.items():
        logger.warning(
            "%s data, %s of the first %s rows (first: row %s, counted from 0): %s [%s; `hf-dpo inspect` shows them]",
            split_name,
            count,
            report.rows,
            first,
            message,
            kind,
        )
    return report.warnings
