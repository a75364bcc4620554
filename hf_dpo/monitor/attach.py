"""The watchers a run asks for, added to its trainer: the doctor (doctor) and the samples (``generate_samples``),
read with defaults so plain `TrainingArguments` work too."""

from __future__ import annotations

from typing import Any

from hf_dpo.monitor.doctor import DoctorCallback
from hf_dpo.monitor.samples import SamplesCallback


def add_tool_callbacks(trainer: Any) -> None:
    """The doctor (unless ``args.doctor`` is False) and the samples callback (when ``args.generate_samples`` > 0),
    each unless the trainer has one already (given in ``callbacks=``, or added by an earlier call)."""
    args = trainer.args
    present = {type(callback) for callback in trainer.callback_handler.callbacks}
    if getattr(args, "doctor", True) and DoctorCallback not in present:
        trainer.add_callback(DoctorCallback())
    if getattr(args, "generate_samples", 0) and SamplesCallback not in present:
        SamplesCallback.attach(trainer, args.generate_samples, getattr(args, "samples_max_new_tokens", 64))
