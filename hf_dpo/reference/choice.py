"""The one place that decides a run's reference (see :func:`build_reference`), and the frozen copy of a PEFT
policy's starting adapter it may add."""

from __future__ import annotations

import copy
from typing import Any

import torch

from hf_dpo.losses import needs_reference
from hf_dpo.models.facts import is_peft_model
from hf_dpo.models.loading import load_causal_lm
from hf_dpo.models.policy import named_model_kwargs
from hf_dpo.reference.kinds import (
    AdapterReference,
    DisabledAdapterReference,
    FrozenModelReference,
    NoReference,
    Reference,
    freeze_adapter,
)


def add_reference_adapter(
    peft_model: torch.nn.Module, train_adapter: str, ref_adapter: str | None
) -> AdapterReference:
    """Freeze ``ref_adapter`` (default: a new copy of ``train_adapter`` named ``"reference"``) as the reference."""
    owned = ref_adapter is None
    if owned:
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        ref_adapter = "reference"
        while ref_adapter in peft_model.peft_config:
            ref_adapter += "_"
        peft_model.add_adapter(ref_adapter, copy.deepcopy(peft_model.peft_config[train_adapter]))
        weights = get_peft_model_state_dict(peft_model, adapter_name=train_adapter)
        set_peft_model_state_dict(peft_model, weights, adapter_name=ref_adapter)
    for name in (train_adapter, ref_adapter):
        if name not in peft_model.peft_config:
            raise ValueError(f"adapter {name!r} is not loaded in the PeftModel; it has {list(peft_model.peft_config)}")
    if ref_adapter == train_adapter:
        raise ValueError(f"model_adapter_name and ref_adapter_name are both {train_adapter!r}; they must differ")
    peft_model.set_adapter(train_adapter)  # trainable; every other adapter frozen
    freeze_adapter(peft_model, ref_adapter)
    return AdapterReference(ref_adapter, train_adapter, owned=owned)


def build_reference(
    policy: torch.nn.Module,
    ref_model: torch.nn.Module | str | None,
    args: Any,
    policy_came_as_peft: bool,
) -> Reference:
    """The reference of a run (see :func:`chosen_reference`), scoring as the policy scores (``fused_lm_head``)."""
    reference = chosen_reference(policy, ref_model, args, policy_came_as_peft)
    reference.hidden_states = args.fused_lm_head
    return reference


def chosen_reference(
    policy: torch.nn.Module,
    ref_model: torch.nn.Module | str | None,
    args: Any,
    policy_came_as_peft: bool,
) -> Reference:
    """Decide the reference of a run.

    In order: none when the loss needs none (or ``args.reference_free``); the given ``ref_model``, used as given (a
    model), or a name loaded with ``args.model_init_kwargs`` and the policy's dtype and attention unless they say
    otherwise (:func:`~hf_dpo.models.policy.named_model_kwargs`); for a PEFT policy, its own starting adapter
    frozen (when it arrived as a PeftModel, e.g. an SFT LoRA, or ``args.ref_adapter_name`` names one, or
    ``args.sync_ref_model`` needs a reference that can move) or else the base model with adapters disabled; for a
    plain model, a frozen copy of it.
    """
    if args.reference_free or not needs_reference(args.loss_type):
        return NoReference()
    if ref_model is not None:
        if ref_model is policy:
            raise ValueError("ref_model is the policy model itself; pass a separate copy or leave it None")
        if isinstance(ref_model, str):
            ref_model = load_causal_lm(ref_model, role="reference", **named_model_kwargs(args, like=policy))
        return FrozenModelReference(ref_model)
    if is_peft_model(policy):
        # TR-DPO moves the reference: with PEFT that needs an adapter of its own (a copy of the trained one).
        if policy_came_as_peft or args.ref_adapter_name or args.sync_ref_model:
            # The PeftModel's adapter (an SFT LoRA, say) is what training starts from: it is the reference.
            train_adapter = args.model_adapter_name or policy.active_adapter
            return add_reference_adapter(policy, train_adapter, args.ref_adapter_name)
        return DisabledAdapterReference()
    return FrozenModelReference(copy.deepcopy(policy), copy_of_policy=True)
