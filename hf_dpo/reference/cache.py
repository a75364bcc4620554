"""A disk cache of precomputed reference log-probs, keyed by everything that changes them.

With ``precompute_ref_log_probs=True`` the reference pass over a dataset is saved to
``<cache dir>/<key>.pt`` (the cache dir is ``ref_logps_cache_dir``, else ``$HF_DPO_CACHE``, else
``~/.cache/hf_dpo/ref_logps``; delete the folder to clear it). A later run with the same key loads the file and
skips the pass: a β or learning-rate sweep over one dataset computes the reference once. The key hashes

- the reference weights (a sample of every tensor's bytes, with names, shapes and dtypes; for a PEFT policy, the
  base weights without the adapters, which are disabled for the reference),
- the tokenized ids of the dataset (which already reflect the tokenizer, chat template, max lengths and
  truncation mode; every answer of a list row, in its order), and the bytes of its images (files named by path are
  read), with the image processor's settings (how images become pixels),
- the precision the pass runs in (autocast bf16/fp16 or none) and the log-prob definition (summed completion
  log-probs, or LD-DPO's weighted sums; format version).

A file is written atomically (temporary name, then rename), so runs sharing the cache (a sweep launched in
parallel) never read half a file, and checked on load (key, row count, checksum of the values); a file that fails
any check is reported, deleted and recomputed, never used. A write that fails (a full disk) is reported and leaves
the cache as it was; the run goes on.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset

from hf_dpo.data.columns import IMAGE_COLUMNS, TOKEN_COLUMNS
from hf_dpo.data.images import image_digest
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
    order, and of the bytes of each row's images (a vision-language dataset's image column)."""
    if getattr(dataset, "_indices", None) is not None:
        dataset = dataset.flatten_indices()  # hash what the rows are, not how a filter reached them
    digest = hashlib.sha256(str(len(dataset)).encode())
    for name in (name for name in TOKEN_COLUMNS if name in dataset.column_names):
        column = dataset.data.column(name).combine_chunks()
        digest.update(name.encode())
        while _is_list(column.type.value_type):  # a list row's answers: a list of id lists
            digest.update(np.asarray(column.offsets).tobytes())
            column = column.flatten()
        digest.update(np.asarray(column.offsets).tobytes())
        digest.update(np.asarray(column.flatten()).astype(np.int64).tobytes())
    for name in (name for name in IMAGE_COLUMNS if name in dataset.column_names):
        digest.update(f"{name}:{image_digest(dataset.data.column(name).to_pylist())}".encode())  # stored, undecoded
    return digest.hexdigest()


def _is_list(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)


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


def save(path: Path, key: str, values: torch.Tensor) -> bool:
    """Write the cache file ``path`` atomically; False (and a warning) when it cannot be written.

    The bytes go to a temporary file of a unique name beside ``path``, are flushed to the disk, and the file is
    renamed over ``path``: a reader (another run of a sweep) sees no file, the old one or the whole new one, never
    half of one, and two runs writing the same key both leave a whole file. A write that fails (a full disk, a
    quota, a file-size limit, a read-only folder) removes its temporary file and leaves the cache as it was; the
    run goes on with the values it computed, since the cache only saves the next run a pass.
    """
    values = values.float().contiguous()
    buffer = io.BytesIO()  # serialized first, so a failed write is a plain OSError with its errno
    torch.save({"key": key, "values": values, "checksum": _checksum(values)}, buffer)
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
        with open(partial, "xb") as file:  # a name no other writer has; the umask's usual permissions
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())  # the rename below must not reach the disk before the bytes do
        os.replace(partial, path)  # readers see the old file or the whole new one, never half of it
        return True
    except OSError as error:
        if partial is not None:
            partial.unlink(missing_ok=True)
        folder = path.parent if path.parent.is_dir() else Path(path.anchor or ".")
        logger.warning(
            "could not write the reference log-prob cache %s (%s): it needs %s bytes and %s bytes are free there. "
            "The run goes on with the log-probs it computed; the cache is unchanged, and the next run computes them "
            "again",
            path,
            error.strerror or error,
            buffer.getbuffer().nbytes,
            shutil.disk_usage(folder).free,
        )
        return False
