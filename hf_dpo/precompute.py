"""The reference pass before training: reference log-probs of a whole dataset as two columns.

With ``precompute_ref_log_probs=True`` the trainer runs :func:`precompute_columns` once per split; each process
scores a contiguous shard, the shards are gathered in order, and the result is read from / written to the disk
cache of :mod:`hf_dpo.ref_cache`. Afterwards the batch carries the columns and the reference never runs again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object
from datasets import Dataset
from tqdm.auto import tqdm

from hf_dpo import ref_cache
from hf_dpo.columns import REF_COLUMNS

logger = logging.getLogger(__name__)


@torch.no_grad()
def compute_reference_logps(
    reference: Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
    policy: torch.nn.Module,
    dataset: Dataset,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    device: torch.device,
    description: str = "reference log-probs",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One no-grad pass of ``reference`` over ``dataset``: float32 ``(chosen, rejected)`` log-probs, ``[N]`` each."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"precompute_ref_log_probs needs a map-style datasets.Dataset, got {type(dataset).__name__}")
    chosen, rejected = [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc=description):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        batch = {name: value.to(device) for name, value in collator(list(rows)).items()}
        ref_chosen, ref_rejected = reference(policy, batch)
        chosen.append(ref_chosen.float().cpu())
        rejected.append(ref_rejected.float().cpu())
    return torch.cat(chosen), torch.cat(rejected)


def with_reference_columns(dataset: Dataset, chosen: torch.Tensor, rejected: torch.Tensor) -> Dataset:
    """``dataset`` with the columns :class:`PrecomputedReference` reads (replacing any old ones)."""
    dataset = dataset.remove_columns([name for name in REF_COLUMNS if name in dataset.column_names])
    dataset = dataset.add_column(REF_COLUMNS[0], chosen.tolist())
    return dataset.add_column(REF_COLUMNS[1], rejected.tolist())


def precompute_columns(
    dataset: Any,
    split: str,
    *,
    reference: Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
    policy: torch.nn.Module,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    accelerator: Any,
    cache_dir: str | Path | None,
    fingerprint: Callable[[torch.nn.Module], str],
    definition: str = "sum",
) -> Any:
    """``dataset`` with reference log-prob columns (``definition`` names how a sequence's log-probs are summed,
    part of the cache key): from the disk cache (see :mod:`hf_dpo.ref_cache`) when it has them, else computed with each process scoring a contiguous shard, gathered in order, and cached by rank 0."""
    if dataset is None or set(REF_COLUMNS) <= set(dataset.column_names or ()):
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
        key = ref_cache.cache_key(fingerprint(policy), ref_cache.dataset_fingerprint(dataset), precision, definition)
        cache_file = Path(cache_dir) / f"{key}.pt"
    # The main process reads the cache and tells the others, so all take the same branch around the collectives.
    cached = ref_cache.load(cache_file, key, len(dataset)) if cache_file and accelerator.is_main_process else None
    if accelerator.num_processes > 1:
        cached = broadcast_object_list([cached])[0]
    if cached is not None:
        logger.info("%s set: reference log-probs loaded from %s", split, cache_file)
        return with_reference_columns(dataset, *cached)

    processes, index = accelerator.num_processes, accelerator.process_index
    shard = dataset.shard(processes, index, contiguous=True) if processes > 1 else dataset
    chosen, rejected = compute_reference_logps(
        reference, policy, shard, collator, batch_size, accelerator.device, split
    )
    if processes > 1:
        shards = gather_object([(chosen.tolist(), rejected.tolist())])  # [(chosen, rejected) of rank 0, 1, ...]
        chosen = torch.tensor([value for shard_chosen, _ in shards for value in shard_chosen])
        rejected = torch.tensor([value for _, shard_rejected in shards for value in shard_rejected])
    if cache_file is not None and accelerator.is_main_process:
        ref_cache.save(cache_file, key, chosen, rejected)
        logger.info("%s set: reference log-probs cached in %s", split, cache_file)
    return with_reference_columns(dataset, chosen, rejected)
