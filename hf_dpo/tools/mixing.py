"""A recipe's ``datasets:`` list made into one training set: each source loaded, its columns mapped, its share of rows
drawn with the run's seed, then all mixed and shuffled with the same seed. The rows taken from each source are
logged and returned, for the run's summary and the model card.

    train, counts = mix_sources(data_args.sources(), seed=42)   # counts: [(source, rows taken, rows it has)]

Sources must agree on their columns after mapping (a column only some sources have is dropped, and the log says
so); a column whose type differs between sources is an error naming both.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hf_dpo.config.data_sources import DataSource
from hf_dpo.config.recipe import UserError
from hf_dpo.models.packaged import PACKAGED_PREFIX

logger = logging.getLogger("hf_dpo")


def load_source(source: DataSource) -> Any:
    """The rows of one source's split, as ``datasets`` loads them, with its ``column_mapping`` applied."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetNotFoundError

    path = os.path.expanduser(source.path)
    try:
        if source.path.startswith(PACKAGED_PREFIX):
            from hf_dpo.demo.packaged import load_packaged_splits  # the demo's data; the core never needs it

            splits = load_packaged_splits(source.path)
            if source.split not in splits:
                raise UserError(f"{source.label}: no split {source.split!r}; it has {', '.join(splits)}")
            dataset = splits[source.split]
        elif os.path.isfile(path):  # one data file: its rows are the train split, as datasets names them
            builder = path.rsplit(".", 1)[-1].replace("jsonl", "json")
            dataset = load_dataset(builder, data_files={source.split: path}, split=source.split)
        else:
            dataset = load_dataset(path, source.name, data_files=source.data_files, split=source.split)
    except (DatasetNotFoundError, FileNotFoundError, ValueError) as error:
        if isinstance(error, UserError):
            raise
        raise UserError(f"{source.label}: {' '.join(str(error).split())}") from error
    return _mapped(dataset, source)


def _mapped(dataset: Any, source: DataSource) -> Any:
    if not source.column_mapping:
        return dataset
    missing = [name for name in source.column_mapping if name not in dataset.column_names]
    if missing:
        raise UserError(
            f"{source.label}: column_mapping names {missing[0]!r}, which the dataset does not have (it has "
            f"{', '.join(dataset.column_names)})"
        )
    return dataset.rename_columns(source.column_mapping)


def draw(dataset: Any, source: DataSource, seed: int) -> Any:
    """The rows of ``dataset`` that ``source`` asks for (every row, a fraction, or a number), drawn with ``seed``."""
    total = len(dataset)
    if source.rows is not None:
        count = source.rows
        if count > total:
            raise UserError(f"{source.label}: rows={count}, but the split has only {total} rows")
    elif source.fraction is not None:
        count = round(source.fraction * total)
        if count == 0:
            raise UserError(f"{source.label}: fraction={source.fraction:g} of {total} rows is no row")
    else:
        return dataset
    return dataset.shuffle(seed=seed).select(range(count))


def mix_sources(sources: list[DataSource], seed: int) -> tuple[Any, list[tuple[str, int, int]]]:
    """One training set from ``sources``, shuffled with ``seed``, and ``(source, rows taken, rows it has)`` for
    each."""
    from datasets import concatenate_datasets

    drawn, counts = [], []
    for source in sources:
        dataset = load_source(source)
        part = draw(dataset, source, seed)
        drawn.append((source, part))
        counts.append((source.source, len(part), len(dataset)))
    drawn = _aligned(_common_columns(drawn))
    mixed = concatenate_datasets([part for _, part in drawn]).shuffle(seed=seed)
    for (name, taken, total), (source, _) in zip(counts, drawn):
        share = f"fraction {source.fraction:g}" if source.fraction else f"rows {source.rows}" if source.rows else "all"
        logger.info("train data: %s rows of %s (%s of its %s)", taken, name, share, total)
    logger.info("train data: %s rows from %s sources, mixed and shuffled with seed %s", len(mixed), len(drawn), seed)
    return mixed, counts


def _common_columns(drawn: list[tuple[DataSource, Any]]) -> list[tuple[DataSource, Any]]:
    """Each part with only the columns every source has; the others are dropped, and the log names them."""
    common = set.intersection(*(set(part.column_names) for _, part in drawn))
    kept = []
    for source, part in drawn:
        extra = [name for name in part.column_names if name not in common]
        if extra:
            logger.warning(
                "%s: columns %s dropped (not every source has them)", source.label, ", ".join(repr(n) for n in extra)
            )
            part = part.remove_columns(extra)
        kept.append((source, part))
    return kept


def _aligned(drawn: list[tuple[DataSource, Any]]) -> list[tuple[DataSource, Any]]:
    """Each part with the first source's column order and types (a cast where they only differ in storage, such as
    string and large_string); a column that holds another kind of value is an error naming both sources."""
    first_source, first = drawn[0]
    aligned = [drawn[0]]
    for source, part in drawn[1:]:
        part = part.select_columns(first.column_names)
        for name in first.column_names:
            if part.features[name] == first.features[name]:
                continue
            try:
                part = part.cast_column(name, first.features[name])
            except (TypeError, ValueError) as error:
                raise UserError(
                    f"{source.label}: column {name!r} holds {_kind(part.features[name])}, but in "
                    f"{first_source.label} it holds {_kind(first.features[name])}; give every source the same shape "
                    "(all text, or all chat messages)"
                ) from error
        aligned.append((source, part))
    return aligned


def _kind(feature: Any) -> str:
    """A column's type in words: text, or what ``datasets`` calls it."""
    return "text" if getattr(feature, "dtype", None) in ("string", "large_string") else repr(feature)[:120]
