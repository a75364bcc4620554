"""A disk cache of precomputed reference log-probs, keyed by everything that changes them.

With ``precompute_ref_log_probs=True`` the reference pass over a dataset is saved to
``<cache dir>/<key>.pt`` (the cache dir is ``ref_logps_cache_dir``, else ``$HF_DPO_CACHE``, else
``~/.cache/hf_dpo/ref_logps``; delete the folder to clear it). A later run with the same key loads the file and
skips the pass: a β or learning-rate sweep over one dataset computes the reference once. The key hashes

- the reference weights (a sample of every tensor's bytes, with names, shapes and dtypes; for a PEFT policy, the
  base weights without the adapters, which are disabled for the reference),
- the tokenized ids of the dataset (which already reflect the tokenizer, chat template, max lengths and
  truncation mode),
- the precision the pass runs in (autocast bf16/fp16 or none) and the log-prob definition (summed completion
  log-probs, or LD-DPO's weighted sums; format version).

A file is written atomically (temporary name, then rename) and checked on load (key, row count, checksum of the
values); a file that fails any check is reported, deleted and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from hf_dpo.data.columns import TOKEN_COLUMNS
from hf_dpo.reference.engines import whole

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump when the meaning of the cached numbers changes (2: one [N, C] tensor of columns)
_SAMPLE_VALUES = 4096  # values hashed per tensor: enough to see any training update or a different checkpoint


def default_cache_dir() -> Path:
    return Path(os.environ.get("HF_DPO_CACHE", Path.home() / ".cache" / "hf_dpo")) / "ref_logps"


def weights_fingerprint(model: torch.nn.Module, skip: Callable[[str], bool] | None = None) -> str:
    """A hash of the model's tensors: names, shapes, dtypes and an evenly strided sample of each one's values;
    tensors whose name ``skip`` accepts (adapters the reference does not use) are left out."""
    digest = hashlib.sha256()
    for name, tensor in sorted({**dict(model.named_parameters()), **dict(model.named_buffers())}.items()):
        if skip is not None and skip(name):
            continue
        with whole(tensor) as values:  # a sharded parameter is read whole, not as this process's shard
            flat = values.detach().reshape(-1)
            step = max(1, flat.numel() // _SAMPLE_VALUES)
            sample = flat[::step][:_SAMPLE_VALUES].cpu().contiguous()
            shape = tuple(values.shape)
        digest.update(f"{name}|{shape}|{tensor.dtype}|".encode())
        digest.update(sample.view(torch.uint8).numpy().tobytes() if sample.numel() else b"")
    return digest.hexdigest()


def dataset_fingerprint(dataset: Dataset) -> str:
    """A hash of the token ids in the id columns (pairs, or unpaired rows and their KL counterparts), in row
    order."""
    if getattr(dataset, "_indices", None) is not None:
        dataset = dataset.flatten_indices()  # hash what the rows are, not how a filter reached them
    digest = hashlib.sha256(str(len(dataset)).encode())
    for name in (name for name in TOKEN_COLUMNS if name in dataset.column_names):
        column = dataset.data.column(name).combine_chunks()
        digest.update(name.encode())
        digest.update(np.asarray(column.offsets).tobytes())
        digest.update(np.asarray(column.flatten()).astype(np.int64).tobytes())
    return digest.hexdigest()


def cache_key(reference_weights: str, data: str, precision: str, definition: str = "sum") -> str:
    """The file name of one split's cached log-probs; ``definition`` names how tokens are summed (plain sums, or
    LD-DPO's weighted sums)."""
    parts = (f"v{FORMAT_VERSION}", f"{definition}-of-completion-logps", reference_weights, data, precision)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _checksum(values: torch.Tensor) -> str:
    return hashlib.sha256(values.numpy().tobytes()).hexdigest()


def load(path: Path, key: str, num_rows: int) -> torch.Tensor | None:
    """The cached ``[N, C]`` log-probs (one column per reference column), or None when missing or unusable (then
    the file is removed)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        values = payload["values"]
        problem = (
            "wrong key"
            if payload.get("key") != key
            else f"{len(values)} rows, expected {num_rows}"
            if values.dim() != 2 or len(values) != num_rows
            else "checksum mismatch"
            if payload.get("checksum") != _checksum(values)
            else None
        )
    except Exception as error:  # a truncated or foreign file fails in many ways; all mean "recompute"
        problem = f"unreadable ({type(error).__name__}: {error})"
    if problem is None:
        return values
    logger.warning("reference log-prob cache %s is unusable (%s); recomputing it", path, problem)
    path.unlink(missing_ok=True)
    return None


def save(path: Path, key: str, values: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    values = values.float().contiguous()
    payload = {"key": key, "values": values, "checksum": _checksum(values)}
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(payload, partial)
    os.replace(partial, path)  # readers see the old file or the whole new one, never half of it
