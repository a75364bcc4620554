"""What watches a run from below the trainer: the doctor, the samples, generation, the pair metrics.

- :mod:`~hf_dpo.monitor.doctor`: one warning per known failure, with its likely cause and a knob;
- :mod:`~hf_dpo.monitor.samples`: answers to fixed prompts at every evaluation (:mod:`~hf_dpo.monitor.trackers`
  sends them to W&B, Comet, MLflow, TensorBoard, Trackio);
- :mod:`~hf_dpo.monitor.generation`: answers generated from tokenized prompts, with their lengths;
- :mod:`~hf_dpo.monitor.pair_metrics`: preference metrics of a held-out split as pure functions
  (``preference_metric/`` is the same as an ``evaluate`` module).
"""

from __future__ import annotations

from typing import Any

from hf_dpo.monitor.doctor import DoctorCallback
from hf_dpo.monitor.samples import SamplesCallback

__all__ = ["DoctorCallback", "SamplesCallback", "add_tool_callbacks"]


def add_tool_callbacks(trainer: Any) -> None:
    """The doctor (unless ``args.doctor`` is False) and the samples callback (when ``args.generate_samples`` > 0),
    each unless the trainer has one already (given in ``callbacks=``, or added by an earlier call)."""
    args = trainer.args
    present = {type(callback) for callback in trainer.callback_handler.callbacks}
    if getattr(args, "doctor", True) and DoctorCallback not in present:
        trainer.add_callback(DoctorCallback())
    if getattr(args, "generate_samples", 0) and SamplesCallback not in present:
        SamplesCallback.attach(trainer, args.generate_samples, getattr(args, "samples_max_new_tokens", 64))
