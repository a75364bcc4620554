"""The reference pass before training: reference log-probs of a whole dataset as two columns (one list column, one
value per answer, for lists of answers).

With ``precompute_ref_log_probs=True`` the trainer runs :func:`precompute_columns` once per split; each process
scores a contiguous shard, the shards are gathered in order, and the result is read from / written to the disk
cache of :mod:`hf_dpo.reference.cache`. Afterwards the batch carries the columns and the reference never runs again.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object
from datasets import Dataset
from tqdm.auto import tqdm

from hf_dpo.batch import ScoredBatch
from hf_dpo.batch.lists import MASK_COLUMN
from hf_dpo.data.columns import COMPLETIONS_COLUMN, LIST_REF_COLUMNS, REF_COLUMNS
from hf_dpo.reference import cache as ref_cache

logger = logging.getLogger(__name__)


ReferenceFn = Callable[[torch.nn.Module, ScoredBatch], torch.Tensor]


@torch.no_grad()
def compute_reference_logps(
    reference: ReferenceFn,
    policy: torch.nn.Module,
    dataset: Dataset,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    device: torch.device,
    description: str = "reference log-probs",
    num_columns: int = 2,
    ld_alpha: float | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """One no-grad pass of ``reference`` over ``dataset``: float32 ``[N, num_columns]``, row ``n`` holding the
    log-probs of the ``num_columns`` sequences the collator builds from dataset row ``n`` (its chosen and rejected
    completions, or its completion and its KL counterpart; for lists of answers, one per answer, rows padded with
    NaN to the longest list). ``ld_alpha``: LD-DPO's token weights, as the step weighs them; ``autocast``: the
    precision the policy runs at, so the reference scores as it does."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"precompute_ref_log_probs needs a map-style datasets.Dataset, got {type(dataset).__name__}")
    values = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=description):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        columns = {name: value.to(device) for name, value in collator(list(rows)).items()}
        with autocast():
            logps = reference(policy, ScoredBatch.from_collated(columns, ld_alpha)).float().cpu()
        answers = columns.get(MASK_COLUMN)  # lists of answers: [G, K], slot-major sequences, NaN in the gaps
        if answers is not None:
            values.append(logps.reshape(answers.shape[1], -1).T.masked_fill(~answers.cpu(), torch.nan))
        else:
            values.append(logps.reshape(num_columns, -1).T)  # [num_columns * B]: the collator's blocks, in order
    if len({block.shape[1] for block in values}) == 1:
        return torch.cat(values)
    return stacked_rows([row for block in values for row in block.tolist()])


def stacked_rows(rows: list[list[float]]) -> torch.Tensor:
    """Rows of values as one float32 ``[N, C]`` tensor, shorter rows (shorter lists of answers) padded with NaN."""
    width = max(map(len, rows), default=0)
    return torch.tensor([[*row, *[math.nan] * (width - len(row))] for row in rows], dtype=torch.float32)


def pass_settings(args: Any, use_cache: bool) -> dict[str, Any]:
    """The pass's batch size, cache folder (``None``: no cache) and LD-DPO's ``ld_alpha`` (it changes a sequence's
    log-prob, so it is part of the cache key), from the run's `DPOTrainingArguments`."""
    use_cache = use_cache and args.ref_logps_cache
    return {
        "batch_size": args.precompute_ref_batch_size or args.per_device_eval_batch_size,
        "cache_dir": (args.ref_logps_cache_dir or ref_cache.default_cache_dir()) if use_cache else None,
        "ld_alpha": args.ld_alpha,
    }


def with_reference_columns(dataset: Dataset, values: torch.Tensor, columns: tuple[str, ...]) -> Dataset:
    """``dataset`` with the columns :class:`~hf_dpo.reference.kinds.PrecomputedReference` reads (replacing old ones):
    one value per column, or for lists of answers one list column, each row as long as its list."""
    dataset = dataset.remove_columns([name for name in columns if name in dataset.column_names])
    if columns == LIST_REF_COLUMNS:
        lengths = [len(answers) for answers in answer_lists(dataset)]
        return dataset.add_column(columns[0], [row[:length] for row, length in zip(values.tolist(), lengths)])
    for index, name in enumerate(columns):
        dataset = dataset.add_column(name, values[:, index].tolist())
    return dataset


def answer_lists(dataset: Dataset) -> list[list]:
    """Each row's answers: a list row's ``completions_input_ids``, a pair's ``[chosen, rejected]``."""
    if COMPLETIONS_COLUMN in dataset.column_names:
        return dataset[COMPLETIONS_COLUMN]
    return [[None, None]] * len(dataset)


def precompute_columns(
    dataset: Any,
    split: str,
    *,
    reference: ReferenceFn,
    policy: torch.nn.Module,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    accelerator: Any,
    cache_dir: str | Path | None,
    fingerprint: Callable[[torch.nn.Module], str],
    ld_alpha: float | None = None,
    columns: tuple[str, ...] = REF_COLUMNS,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Any:
    """``dataset`` with reference log-prob ``columns`` (``ld_alpha`` weighs the tokens as the step does, and is part
    of the cache key; ``autocast`` is the precision the policy runs at): from the disk cache (see :mod:`hf_dpo.reference.cache`) when it has them, else computed
    with each process scoring a contiguous shard, gathered in order, and cached by rank 0."""
    if dataset is None or set(columns) <= set(dataset.column_names or ()):
        return dataset
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"precompute_ref_log_probs=True needs the {split} dataset in memory (a datasets.Dataset), got a "
            f"{type(dataset).__name__}: load it without streaming, or set precompute_ref_log_probs=False (the "
            "reference then runs at each step)"
        )
    cache_file, key = None, ""
    if cache_dir is not None:
        precision = f"{accelerator.mixed_precision}-{accelerator.device.type}"
        data = ref_cache.dataset_fingerprint(dataset)
        pixels = getattr(collator, "fingerprint", None)  # how a vision collator turns images into pixels
        key = ref_cache.cache_key(
            fingerprint(policy),
            data,
            precision,
            f"{'sum' if ld_alpha is None else f'ld_alpha={ld_alpha}'}:{','.join(columns)}"
            + (f":pixels={pixels()}" if pixels else ""),
        )
        cache_file = Path(cache_dir) / f"{key}.pt"
    # The main process reads the cache and tells the others, so all take the same branch around the collectives.
    cached = ref_cache.load(cache_file, key, len(dataset)) if cache_file and accelerator.is_main_process else None
    if accelerator.num_processes > 1:
        cached = broadcast_object_list([cached])[0]
    if cached is not None:
        logger.info("%s set: reference log-probs loaded from %s", split, cache_file)
        return with_reference_columns(dataset, cached, columns)

    processes, index = accelerator.num_processes, accelerator.process_index
    shard = dataset.shard(processes, index, contiguous=True) if processes > 1 else dataset
    values = compute_reference_logps(
        reference, policy, shard, collator, batch_size, accelerator.device, split, len(columns), ld_alpha, autocast
    )
    if processes > 1:
        shards = gather_object([values.tolist()])  # the rows of rank 0, 1, ...
        values = stacked_rows([row for shard_rows in shards for row in shard_rows])
    if cache_file is not None and accelerator.is_main_process and ref_cache.save(cache_file, key, values):
        logger.info("%s set: reference log-probs cached in %s", split, cache_file)
    return with_reference_columns(dataset, values, columns)
