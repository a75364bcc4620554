"""Unpaired (KTO) rows beside pairs: each row's mismatched KL counterpart, pairs unrolled into a desirable and an
undesirable row, and the KTO paper's advice on balancing the two."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from datasets import Dataset, IterableDataset

from hf_dpo.data.columns import ID_COLUMNS, KL_COMPLETION_COLUMN, LABEL_COLUMN, REF_COLUMNS
from hf_dpo.data.errors import DataFormatError

logger = logging.getLogger(__name__)


def kl_partners(prompts: list[Sequence[int]]) -> list[int]:
    """For each row, the index of the next row (cyclically) whose prompt differs: its completion is the row's
    mismatched KL counterpart. Unrolled pairs put two rows with the same prompt side by side, so "the next row"
    alone would often pair a prompt with its own other answer. With a single distinct prompt, the next row.

    >>> kl_partners([[1], [1], [2], [3], [3]])
    [2, 2, 3, 0, 0]
    """
    count = len(prompts)
    partners = []
    for index, prompt in enumerate(prompts):
        offsets = range(1, count)
        partner = next(
            ((index + k) % count for k in offsets if list(prompts[(index + k) % count]) != list(prompt)), None
        )
        partners.append(partner if partner is not None else (index + 1) % count)
    return partners


def with_kl_completions(dataset: Any) -> Any:
    """``dataset`` (tokenized unpaired rows, map-style) with each row's KL counterpart fixed as a column: the
    completion of the next row with another prompt (:func:`kl_partners`), so the reference log-probs of the
    counterparts can be precomputed and cached like the rest. A stream (or nothing) is returned as it is: its
    batches take counterparts within themselves."""
    if not isinstance(dataset, Dataset) or KL_COMPLETION_COLUMN in dataset.column_names:
        return dataset
    completions = dataset["completion_input_ids"]
    partners = kl_partners(dataset["prompt_input_ids"])
    return dataset.add_column(KL_COMPLETION_COLUMN, [completions[partner] for partner in partners])


def warn_if_unbalanced(stats: dict[str, Any] | None, args: Any) -> None:
    """The KTO paper's advice for unbalanced data: desirable_weight·n_D / (undesirable_weight·n_U) in [1, 4/3]."""
    desirable, undesirable = (stats or {}).get("desirable"), (stats or {}).get("undesirable")
    if not desirable or not undesirable:
        return
    ratio = args.desirable_weight * desirable / (args.undesirable_weight * undesirable)
    if not 1.0 <= ratio <= 4.0 / 3.0 + 1e-9:
        low, high = undesirable / desirable, 4.0 / 3.0 * undesirable / desirable
        logger.warning(
            "KTO: %d desirable and %d undesirable training rows give desirable_weight·n_D / (undesirable_weight·n_U) "
            "= %.3g; the KTO paper advises [1, 4/3]: with undesirable_weight=%g, desirable_weight in [%.3g, %.3g]",
            desirable,
            undesirable,
            ratio,
            args.undesirable_weight,
            low * args.undesirable_weight,
            high * args.undesirable_weight,
        )


UNROLL_BATCH_SIZE = 1000  # TRL unpairs with datasets' default map batch: its chosen rows, then its rejected rows


def _unroll_pairs(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """TRL's ``_unpair_row`` on tokenized pairs: the batch's chosen rows (desirable), then its rejected rows
    (undesirable), every other column repeated."""
    chosen, rejected = batch["chosen_input_ids"], batch["rejected_input_ids"]
    rows = {name: [*values, *values] for name, values in batch.items() if name not in ID_COLUMNS[1:]}
    rows["completion_input_ids"] = [*chosen, *rejected]
    rows[LABEL_COLUMN] = [True] * len(chosen) + [False] * len(rejected)
    return rows


def unrolled_pairs(pairs: Dataset | IterableDataset, split: str) -> Dataset | IterableDataset:
    """Tokenized pairs as unpaired rows (see :func:`_unroll_pairs`)."""
    ref_columns = [name for name in REF_COLUMNS if name in (pairs.column_names or ())]
    if ref_columns:
        raise DataFormatError(
            f"the {split} dataset holds tokenized pairs with reference log-probs {ref_columns}, which an unpaired "
            "loss cannot use; drop those columns (the reference is computed again for the unrolled rows)"
        )
    logger.info(
        "%s set: preference pairs unrolled into unpaired rows, as TRL's KTOTrainer does: each pair's prompt with its "
        "chosen completion (desirable) and with its rejected one (undesirable)",
        split,
    )
    kwargs = {"desc": f"Unrolling {split} pairs"} if isinstance(pairs, Dataset) else {}
    return pairs.map(
        _unroll_pairs, batched=True, batch_size=UNROLL_BATCH_SIZE, remove_columns=list(ID_COLUMNS[1:]), **kwargs
    )
