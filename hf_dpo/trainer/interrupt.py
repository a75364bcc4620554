"""Ctrl-C during ``trainer.train()``: stop at the end of the current optimizer step, save a checkpoint if the run
saves checkpoints, and say how to resume.

Without this, Python raises ``KeyboardInterrupt`` wherever the run happens to be (inside a forward, inside a
checkpoint save), and everything since the last checkpoint is lost. While ``train()`` runs, the first SIGINT only
asks the run to stop; the step finishes, the checkpoint is written as ``save_strategy`` would write any other
(not with ``save_strategy="no"``), and ``train()`` raises :class:`TrainingInterrupted`, a ``KeyboardInterrupt``
whose message says where the checkpoint is and how to resume: a script that calls ``train()`` and then pushes the
model does not go on as if training had ended. A second Ctrl-C stops at once, as Python's default does.

With several processes, every process stops at the same step: each step they agree (one tiny all-gather) on
whether any of them was interrupted, so none waits in a collective for the others.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """``train()`` stopped at a step boundary after Ctrl-C; the message says what was saved and how to resume.

    Attributes:
        step: the last optimizer step done (None: the signal came after the last step).
        checkpoint: the folder of the checkpoint written at that step (None: none was written).
    """

    def __init__(self, message: str, step: int | None = None, checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


class StopOnInterrupt(TrainerCallback):
    """Turns a pending interruption into a stop (and a save) at the end of the optimizer step.

    Args:
        any_process: ``any_process(flag)`` is True when ``flag`` is True on any process (identity on one process).
    """

    def __init__(self, any_process: Callable[[bool], bool] = lambda flag: flag):
        self.any_process = any_process
        self.requested = False  # set by the signal handler
        self.stopped_at: int | None = None  # the global step the run stopped after

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.requested, self.stopped_at = False, None

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if not self.any_process(self.requested):
            return
        self.stopped_at = state.global_step
        control.should_training_stop = True
        control.should_save = args.save_strategy != "no"  # whatever the step's number, if the run saves at all
        control.should_evaluate = False  # an evaluation can take minutes: not after Ctrl-C
        control.should_log = True  # the window since the last log would be lost otherwise

    def on_epoch_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.stopped_at is not None:  # already saved at the step; an epoch-end evaluation would only delay
            control.should_save = control.should_evaluate = False

    def checkpoint(self, args: Any) -> str | None:
        """The folder of the checkpoint written where the run stopped (None: none written)."""
        if self.stopped_at is None or args.save_strategy == "no":
            return None
        return f"{args.output_dir}/{PREFIX_CHECKPOINT_DIR}-{self.stopped_at}"

    def message(self, args: Any) -> str:
        step = self.stopped_at
        if step is None:  # the signal came after the last step (a final evaluation or save): nothing to stop
            return f"Ctrl-C after the last training step: training had finished; its output is in {args.output_dir}"
        if args.save_strategy == "no":
            return (
                f"training stopped by Ctrl-C after step {step}; save_strategy='no', so no checkpoint was written "
                "and this run cannot be resumed (trainer.save_model() still saves the weights as they are)"
            )
        folder = self.checkpoint(args)
        return (
            f"training stopped by Ctrl-C after step {step}; checkpoint saved in {folder}. Resume with "
            "trainer.train(resume_from_checkpoint=True) (hf-dpo train: the same command with "
            f"--resume_from_checkpoint {folder})"
        )


@contextmanager
def stopping_at_step_boundary(callback: StopOnInterrupt, args: Any) -> Iterator[None]:
    """While the block runs, the first SIGINT asks ``callback`` to stop the run at the next step boundary, the
    second raises ``KeyboardInterrupt`` at once. After the block, a stop raises :class:`TrainingInterrupted`.

    Python's own handler is replaced only when it is in place (a handler of the user's, or of a framework, is left
    alone) and only in the main thread, where signal handlers live."""
    installed = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )

    def first_interrupt(signum: int, frame: Any) -> None:
        callback.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
        logger.warning("Ctrl-C: stopping after the current step%s; Ctrl-C again stops at once, unsaved", _saving(args))

    if installed:
        signal.signal(signal.SIGINT, first_interrupt)
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if callback.requested or callback.stopped_at is not None:
        message = callback.message(args)
        logger.warning(message)
        raise TrainingInterrupted(message, callback.stopped_at, callback.checkpoint(args))


def any_process(accelerator: Any) -> Callable[[bool], bool]:
    """``flag -> whether flag is True on any process`` (every process must call it at the same step)."""
    if accelerator.num_processes == 1:
        return lambda flag: flag

    def agree(flag: bool) -> bool:
        return bool(accelerator.gather(torch.tensor([float(flag)], device=accelerator.device)).max().item())

    return agree


def _saving(args: Any) -> str:
    return "" if args.save_strategy == "no" else " and saving a checkpoint"
