"""Trainer callbacks that carry hf_dpo's own state into trainer_state.json, so it survives checkpoints (the
data-preparation counts have theirs in :mod:`hf_dpo.data.preparation`).

``trainer_state.json`` stores each ``ExportableState`` callback's ``state()`` under ``stateful_callbacks``; on
resume, the Trainer loads that file before ``on_train_begin``, where these callbacks read their state back
(whatever ``restore_callback_states_from_checkpoint`` says: a resumed run must continue exactly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_dpo.losses import RewardMean


class RewardMeanCallback(TrainerCallback, ExportableState):
    """Saves ``bco_pair``'s running reward mean (:class:`~hf_dpo.losses.RewardMean`) with each checkpoint and
    restores it on resume."""

    def __init__(self, reward_mean: RewardMean):
        self.reward_mean = reward_mean

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"values": self.reward_mean.state_dict()}}

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        # the name under which checkpoints of earlier versions saved it, too
        saved = state.stateful_callbacks.get(type(self).__name__) or state.stateful_callbacks.get("LossStateCallback")
        if isinstance(saved, list):  # several instances; ours is the only one
            saved = saved[0]
        self.reward_mean.load_state_dict((saved or {}).get("attributes", {}).get("values", {}))


class ReferenceSyncCallback(TrainerCallback):
    """TR-DPO (Gorbatovski et al. 2024): every ``ref_model_sync_steps`` optimizer steps the reference becomes
    ``α·policy + (1 - α)·reference``, ``α = ref_model_mixup_alpha``."""

    def __init__(self, reference: Callable[[], Any], accelerator: Any):
        self.reference, self.accelerator = reference, accelerator

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        if model is not None and state.global_step % args.ref_model_sync_steps == 0:
            self.reference().sync(self.accelerator.unwrap_model(model), args.ref_model_mixup_alpha)
