"""Trainer callbacks that carry hf_dpo's own state into trainer_state.json, so it survives checkpoints (the
data-preparation counts have theirs in :mod:`hf_dpo.data`).

``trainer_state.json`` stores each ``ExportableState`` callback's ``state()`` under ``stateful_callbacks``; on
resume, the Trainer loads that file before ``on_train_begin``, where these callbacks read their state back
(whatever ``restore_callback_states_from_checkpoint`` says: a resumed run must continue exactly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class LossStateCallback(TrainerCallback, ExportableState):
    """Saves the running statistics a loss keeps across steps (``bco_pair``'s reward mean) and restores them on
    resume. Tensors are written as lists of float64 values, which JSON keeps exactly."""

    def __init__(self, loss_state: dict[str, Any]):
        self.loss_state = loss_state

    def state(self) -> dict[str, Any]:
        values = {key: torch.as_tensor(value).double().tolist() for key, value in self.loss_state.items()}
        return {"args": {}, "attributes": {"values": values}}

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        saved = state.stateful_callbacks.get(type(self).__name__)
        if isinstance(saved, list):  # several instances; ours is the only one
            saved = saved[0]
        values = (saved or {}).get("attributes", {}).get("values", {})
        self.loss_state.clear()
        self.loss_state.update({key: torch.tensor(value, dtype=torch.float64) for key, value in values.items()})


class ReferenceSyncCallback(TrainerCallback):
    """TR-DPO (Gorbatovski et al. 2024): every ``ref_model_sync_steps`` optimizer steps the reference becomes
    ``α·policy + (1 - α)·reference``, ``α = ref_model_mixup_alpha``."""

    def __init__(self, reference: Callable[[], Any], accelerator: Any):
        self.reference, self.accelerator = reference, accelerator

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        if model is not None and state.global_step % args.ref_model_sync_steps == 0:
            self.reference().sync(self.accelerator.unwrap_model(model), args.ref_model_mixup_alpha)
