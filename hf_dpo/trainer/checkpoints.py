"""Checkpoints a run can trust: the last complete one on resume, and a clear error when the disk fills up.

Trainer writes a checkpoint folder in one order (``Trainer._save_checkpoint`` in transformers 5.25): the weights,
the optimizer and scheduler, the RNG states, and ``trainer_state.json`` last; then it deletes checkpoints over
``save_total_limit``. A run killed in the middle of that leaves a folder that is not a checkpoint, and
transformers' ``get_last_checkpoint`` takes the highest-numbered folder whatever it holds, so
``resume_from_checkpoint=True`` crashed on it. Here a folder is *complete* when its ``trainer_state.json`` reads as
JSON and its weights are there (a folder half deleted by the rotation can keep the one and lose the other); resuming
takes the last complete folder and removes the incomplete ones, naming each in the log.

    trainer.train(resume_from_checkpoint=True)  # the last complete checkpoint-N of args.output_dir
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import resource
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"  # Trainer writes it last
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")  # transformers' own pattern for checkpoint folders
# How a folder's weights are named: model.safetensors, model-00001-of-00002.safetensors and its index,
# pytorch_model.bin, adapter_model.safetensors (in a sub-folder per adapter when a run has several), FSDP's
# pytorch_model_fsdp_0, DeepSpeed's global_step12/.
_WEIGHTS_PREFIXES = ("model.", "model-", "pytorch_model", "adapter_model", "global_step")
# What an OSError or a library's message says when the disk, a quota or a file-size limit stops a write.
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_SPACE_WORDS = ("no space left", "os error 28", "disk quota", "os error 122", "file too large", "os error 27")


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` is not a complete checkpoint, or None when it is one."""
    folder = Path(folder)
    state = folder / STATE_FILE
    if not state.is_file():
        return f"no {STATE_FILE}, which Trainer writes last: the run stopped while saving it"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        return f"{STATE_FILE} is cut short or unreadable ({type(error).__name__}: {error})"
    if not any(path.name.startswith(_WEIGHTS_PREFIXES) for path in folder.rglob("*")):  # adapters: in sub-folders
        return "no model weights (a folder half deleted by the rotation of save_total_limit)"
    return None


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, highest step first."""
    if not os.path.isdir(output_dir):
        return []
    folders = [path for path in Path(output_dir).iterdir() if _CHECKPOINT.match(path.name) and path.is_dir()]
    return sorted(folders, key=lambda path: int(_CHECKPOINT.match(path.name)[1]), reverse=True)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The highest-numbered complete checkpoint of ``output_dir``, or None."""
    return next((str(folder) for folder in checkpoint_folders(output_dir) if checkpoint_problem(folder) is None), None)


def set_aside_incomplete(output_dir: str | os.PathLike, remove: bool) -> None:
    """Name each incomplete ``checkpoint-N`` folder of ``output_dir`` in a warning and, with ``remove``, delete it:
    none can be resumed from, and a resumed run writes that step's checkpoint again."""
    for folder in checkpoint_folders(output_dir):
        problem = checkpoint_problem(folder)
        if problem is not None:
            logger.warning("%s is incomplete (%s): %s", folder, problem, "removed" if remove else "not a checkpoint")
            if remove:
                shutil.rmtree(folder, ignore_errors=True)


def resume_point(resume_from_checkpoint: str | bool | None, args: Any) -> str | bool | None:
    """What ``Trainer.train`` should resume from: ``True`` becomes the last complete checkpoint of
    ``args.output_dir`` (incomplete ones are removed by the process that saves); a folder given by name must be a
    complete checkpoint. Anything else is passed through."""
    if resume_from_checkpoint is True:
        set_aside_incomplete(args.output_dir, remove=args.should_save)
        found = last_complete_checkpoint(args.output_dir)
        if found is None:
            raise ValueError(f"No valid checkpoint found in output directory ({args.output_dir})")
        logger.info("resuming from %s, the last complete checkpoint", found)
        return found
    if isinstance(resume_from_checkpoint, str | os.PathLike) and _CHECKPOINT.match(Path(resume_from_checkpoint).name):
        problem = checkpoint_problem(resume_from_checkpoint) if os.path.isdir(resume_from_checkpoint) else None
        if problem is not None:
            last = last_complete_checkpoint(Path(resume_from_checkpoint).parent)
            instead = f"the last complete one is {last}" if last else "no complete checkpoint is there"
            raise ValueError(
                f"resume_from_checkpoint={str(resume_from_checkpoint)!r} is not a complete checkpoint ({problem}); "
                f"{instead}: pass it, or resume_from_checkpoint=True to take the last complete one"
            )
    return resume_from_checkpoint


# ---- a full disk ----------------------------------------------------------------------------------------------


def folder_bytes(folder: str | os.PathLike) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def _is_out_of_space(error: BaseException, free: int, needed: int) -> bool:
    """Whether ``error`` (from safetensors, torch.save or a plain write) means the disk or a limit was full: an
    OSError's errno, the words of a library's message, or, for torch.save's opaque "unexpected pos" errors, a
    filesystem with less room than a checkpoint needs (or a file-size limit under it)."""
    for cause in (error, error.__cause__, error.__context__):
        if isinstance(cause, OSError) and cause.errno in _NO_SPACE_ERRNOS:
            return True
        if cause is not None and any(words in str(cause).lower() for words in _NO_SPACE_WORDS):
            return True
    limit = _file_size_limit()
    return free < needed or (limit is not None and limit < needed)


def _file_size_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


class CheckpointSpaceError(OSError):
    """A checkpoint could not be written for lack of space (a full disk, a quota, a file-size limit)."""


@contextmanager
def reporting_full_disk(folder: str | os.PathLike, needed: Callable[[], int]) -> Iterator[None]:
    """Turn a failure to write the checkpoint ``folder`` for lack of space into one clear
    :class:`CheckpointSpaceError`: the path, the room a checkpoint needs (``needed()`` bytes) and the room there is.
    A half-written folder is removed, so it neither holds the space nor passes for a checkpoint; earlier
    checkpoints are left as they were. Other errors pass unchanged."""
    try:
        yield
    except Exception as error:
        folder = Path(folder)
        free = shutil.disk_usage(folder.parent if folder.parent.is_dir() else ".").free
        need = needed()
        if not _is_out_of_space(error, free, need):
            raise
        outcome = f"{folder.name} was written whole before that"
        if folder.is_dir() and checkpoint_problem(folder) is not None:
            outcome = f"The {folder_bytes(folder) / 2**20:.1f} MiB written of {folder.name} were removed"
            shutil.rmtree(folder, ignore_errors=True)
        others = (path for path in checkpoint_folders(folder.parent) if path != folder)
        previous = next((str(path) for path in others if checkpoint_problem(path) is None), None)
        limit = _file_size_limit()
        message = (
            f"saving the checkpoint {folder} failed for lack of room ({type(error).__name__}: {error}). "
            f"A checkpoint of this run takes about {need / 2**20:.1f} MiB; that filesystem had {free / 2**20:.1f} MiB "
            "free"
            + (f", and this process may write files of at most {limit / 2**20:.1f} MiB (ulimit -f)" if limit else "")
            + f". {outcome}; "
            + (f"{previous} is intact. " if previous else "there is no earlier checkpoint. ")
            + "Free some space (or lower save_total_limit, or choose an output_dir with room) and resume with "
            "resume_from_checkpoint=True"
        )
        raise CheckpointSpaceError(errno.ENOSPC, message) from error


def checkpoint_bytes_estimate(output_dir: str | os.PathLike, model: Any, optimizer: Any) -> int:
    """The room the next checkpoint needs: the size of the last complete one, else the trainable weights and the
    optimizer's state (a full fine-tune saves every weight; a PEFT model, its trainable adapters)."""
    last = last_complete_checkpoint(output_dir)
    if last is not None:
        return folder_bytes(last)
    parameters = list(model.parameters())
    saved = [parameter for parameter in parameters if parameter.requires_grad]
    if len(saved) == len(parameters) or not saved:
        saved = parameters
    total = sum(parameter.numel() * parameter.element_size() for parameter in saved)
    state = getattr(optimizer, "state", {}) or {}
    for values in state.values():
        total += sum(value.numel() * value.element_size() for value in values.values() if hasattr(value, "numel"))
    return total


def reporting_full_disk_of(trainer: Any, trial: Any = None) -> Any:
    """:func:`reporting_full_disk` around ``trainer``'s save of the checkpoint of its current step."""
    run_dir = trainer._get_output_dir(trial=trial)
    folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}")
    return reporting_full_disk(
        folder, needed=lambda: checkpoint_bytes_estimate(run_dir, trainer.model, trainer.optimizer)
    )
