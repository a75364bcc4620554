"""A recipe's ``datasets:`` list: several preference datasets mixed into one training set, each entry checked before
anything loads. The mixing itself is :mod:`hf_dpo.tools.mixing`.

    datasets:
      - path: trl-lib/ultrafeedback_binarized      # Hub id, folder, data file or hf_dpo:… (as dataset_name)
        split: train
        fraction: 0.5                               # half its rows, drawn with the run's seed
      - path: data/my_pairs.jsonl
        column_mapping: {question: prompt, good: chosen, bad: rejected}
        rows: 2000                                  # or a number of rows
      - path: org/data
        name: en                                    # the dataset's configuration
        data_files: train-000*.parquet
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

ENTRY_KEYS = ("path", "name", "split", "data_files", "column_mapping", "fraction", "rows")


@dataclass(frozen=True)
class DataSource:
    """One entry of ``datasets:``; ``index`` is its place in the list (from 0), which errors name."""

    index: int
    path: str
    name: str | None = None
    split: str = "train"
    data_files: Any = None
    column_mapping: dict[str, str] | None = None
    fraction: float | None = None
    rows: int | None = None

    @property
    def label(self) -> str:
        """How logs, errors and the card name it: ``datasets[1] (org/data, en, train)``."""
        parts = [self.path, *([self.name] if self.name else []), self.split]
        return f"datasets[{self.index}] ({', '.join(parts)})"

    @property
    def source(self) -> str:
        """The dataset and split, as the card's table names it."""
        return f"{self.path}{f' ({self.name})' if self.name else ''}, {self.split}"


def data_sources(entries: Any) -> list[DataSource]:
    """The checked :class:`DataSource` of each entry; a ValueError names the entry and the field."""
    if not isinstance(entries, list) or not entries:
        raise ValueError("datasets: expected a non-empty list of entries (path, and optionally name, split, ...)")
    return [_source(index, entry) for index, entry in enumerate(entries)]


def _source(index: int, entry: Any) -> DataSource:
    where = f"datasets[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping such as {{path: org/data, fraction: 0.5}}, got {entry!r}")
    for key in entry:
        if key not in ENTRY_KEYS:
            closest = difflib.get_close_matches(str(key), ENTRY_KEYS, n=1)
            hint = f" (did you mean {closest[0]!r}?)" if closest else f"; the keys are {', '.join(ENTRY_KEYS)}"
            raise ValueError(f"{where}: unknown key {key!r}{hint}")
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"{where}: path: expected the dataset (Hub id, folder, data file or hf_dpo:…), got {path!r}")
    where = f"{where} ({path})"
    for key in ("name", "split"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ValueError(f"{where}: {key}: expected a string, got {entry[key]!r}")
    mapping = entry.get("column_mapping")
    if mapping is not None and not (
        isinstance(mapping, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
    ):
        raise ValueError(f"{where}: column_mapping: expected a mapping of column names, e.g. {{question: prompt}}")
    fraction, rows = entry.get("fraction"), entry.get("rows")
    if fraction is not None and rows is not None:
        raise ValueError(f"{where}: fraction and rows are exclusive; give one (none: every row)")
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, int | float)):
        raise ValueError(f"{where}: fraction: expected a number in (0, 1], got {fraction!r}")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"{where}: fraction={fraction} must be in (0, 1]")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise ValueError(f"{where}: rows: expected a whole number of rows >= 1, got {rows!r}")
    return DataSource(
        index=index,
        path=path,
        name=entry.get("name"),
        split=entry.get("split") or "train",
        data_files=entry.get("data_files"),
        column_mapping=mapping,
        fraction=float(fraction) if fraction is not None else None,
        rows=rows,
    )
