"""The kinds of reference a run can have: where the reference log-probs ``log π_ref(y|x)`` come from.

:func:`~hf_dpo.reference.choice.build_reference` picks one of these, each a :class:`Reference` (an abstract base class):

- :class:`FrozenModelReference`: a separate, frozen model (an explicit ``ref_model`` or a copy of the policy).
- :class:`DisabledAdapterReference`: the PEFT policy itself with its adapters switched off, so the base weights
  are held once.
- :class:`AdapterReference`: a frozen adapter of the PEFT policy (the SFT LoRA a run starts from) while a copy of
  it, or another named adapter, trains.
- :class:`PrecomputedReference`: columns ``ref_chosen_logps`` / ``ref_rejected_logps`` (or a list's
  ``ref_completion_logps``) already in the batch.
- :class:`NoReference`: zeros, for reference-free losses (nothing is built or run).

Each is called as ``reference(policy, batch) -> ref_logps``: float32 ``[R]``, the summed completion log-probs of
every sequence of the batch in its row order (``[chosen; rejected]`` for pairs, ``[completions; KL counterparts]``
for unpaired rows), without gradients. Reference passes run in eval mode, which turns off dropout and gradient
checkpointing.
"""

from __future__ import annotations

import abc
import logging
from typing import Any

import torch

from hf_dpo.batch import ScoredBatch
from hf_dpo.data.columns import REF_COLUMNS
from hf_dpo.logprobs import sequence_logps
from hf_dpo.models.modes import eval_mode, freeze
from hf_dpo.models.wrappers import unwrapped
from hf_dpo.reference.cache import weights_fingerprint
from hf_dpo.reference.engines import engine_name, prepare_reference_model

logger = logging.getLogger(__name__)


class Reference(abc.ABC):
    """What every reference is; the trainer talks to nothing else. A reference defines :meth:`__call__`; the rest
    has defaults for a reference that holds nothing.

    Attributes:
        kind: a short name, written into the model card.
        model: the separate model this reference holds, or ``None`` when it holds none (``trainer.ref_model``).
        runs_model: whether a call runs a forward pass (``False``: nothing to precompute).
        batch_columns: columns a call reads from the batch besides the tokens (precomputed log-probs).
        hidden_states: score from the final hidden states where the model allows it (the run's
            ``fused_lm_head``; the policy's log-probs are computed the same way, so step 0 gives log 2).
        copy_of_policy: it starts equal to the policy (a copy of it, or of its starting adapter).
        survives_release: it can still run after :meth:`release` (nothing of it was freed).
    """

    kind = ""
    model: torch.nn.Module | None = None
    runs_model = True
    hidden_states = True
    batch_columns: tuple[str, ...] = ()
    copy_of_policy = False
    survives_release = False

    @abc.abstractmethod
    def __call__(self, policy: torch.nn.Module, batch: ScoredBatch) -> torch.Tensor:
        """The reference log-probs of every sequence of ``batch``: float32 ``[R]``, in its row order, no gradients."""

    def fingerprint(self, policy: torch.nn.Module) -> str:
        """A hash of the weights that define this reference (the key of the precomputed log-prob cache).

        The references that run weights of their own (a frozen model, the base under disabled adapters, a frozen
        adapter) define it; the others (none, precomputed columns, the policy itself) have nothing to hash, and
        their log-probs are never cached.
        """
        raise TypeError(f"a {self.kind!r} reference runs no weights of its own, so it has no fingerprint to cache by")

    # prepare and release are hooks, not abstract: a reference that holds no model has nothing to place or free
    def prepare(self, accelerator: Any) -> None:  # noqa: B027
        """Place what this reference holds for ``accelerator``; called once the Trainer has built it."""

    def release(self, policy: torch.nn.Module) -> None:  # noqa: B027
        """Free what only the reference needed, once its log-probs are precomputed and it never runs again."""

    def sync(self, policy: torch.nn.Module, alpha: float) -> None:
        """TR-DPO: move the reference to ``alpha·policy + (1 - alpha)·reference``."""
        raise ValueError(f"sync_ref_model=True cannot move a {self.kind!r} reference")


def freeze_adapter(peft_model: torch.nn.Module, adapter: str) -> None:
    """Freeze every parameter of ``adapter`` in ``peft_model``: LoRA on modules and on parameters alike (a
    mixture-of-experts' stacked experts, ``target_parameters``, sit in nested wrappers), whatever a peft version's
    ``set_adapter`` leaves trainable. (Its config's ``inference_mode`` is left alone: prompt-learning adapters read it
    in their forward; a checkpoint saves every adapter with ``inference_mode`` true anyway.)"""
    part = f".{adapter}."
    for name, parameter in peft_model.named_parameters():
        if part in name:
            parameter.requires_grad_(False)


def _mix_(reference: torch.Tensor, policy: torch.Tensor, alpha: float) -> None:
    reference.data.mul_(1.0 - alpha).add_(policy.data.to(reference.dtype), alpha=alpha)


class NoReference(Reference):
    """Reference-free: ``log π_ref`` is taken as 0."""

    kind = "none"
    runs_model = False

    def __call__(self, policy: torch.nn.Module, batch: ScoredBatch) -> torch.Tensor:
        return torch.zeros(batch.num_sequences, dtype=torch.float32, device=batch.device)


class FrozenModelReference(Reference):
    """A separate model, frozen, placed on the policy's device."""

    kind = "model"

    def __init__(self, model: torch.nn.Module, copy_of_policy: bool = False):
        self.model = freeze(model)
        self.copy_of_policy = copy_of_policy

    @torch.no_grad()
    def sync(self, policy: torch.nn.Module, alpha: float) -> None:
        if getattr(self, "engine", "ddp") != "ddp":
            raise ValueError(
                f"sync_ref_model=True with a separate reference under {self.engine}: the sharded weights cannot be "
                "mixed in place; train a PEFT model (its reference adapter moves) or turn sync_ref_model off"
            )
        policy_parameters = dict(unwrapped(policy).named_parameters())
        reference_parameters = dict(self.model.named_parameters())
        if policy_parameters.keys() != reference_parameters.keys():
            raise ValueError(
                "sync_ref_model=True mixes the policy into the reference parameter by parameter, but their "
                "parameters differ (a PEFT policy with a separate ref_model?); leave ref_model None"
            )
        for name, parameter in reference_parameters.items():
            _mix_(parameter, policy_parameters[name], alpha)

    def fingerprint(self, policy: torch.nn.Module) -> str:
        return weights_fingerprint(self.model)

    def prepare(self, accelerator: Any) -> None:
        # Sharded like the policy under ZeRO-3 and FSDP2, replicated otherwise (see hf_dpo/reference/engines.py)
        self.engine = engine_name(accelerator)
        self.model = prepare_reference_model(self.model, accelerator)

    def release(self, policy: torch.nn.Module) -> None:
        self.model = None

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module, batch: ScoredBatch) -> torch.Tensor:
        return sequence_logps(self.model, batch, self.hidden_states)


class DisabledAdapterReference(Reference):
    """The PEFT policy with its adapters disabled: the base model, without a second copy of its weights.

    The forward goes through the (possibly DDP/FSDP/DeepSpeed-wrapped) policy so a sharded model gathers its
    weights as it does for the policy's own forward.
    """

    kind = "peft_disabled"
    survives_release = True  # nothing is held: disabling the adapters works at any time

    def fingerprint(self, policy: torch.nn.Module) -> str:
        return weights_fingerprint(unwrapped(policy), skip=lambda name: "lora_" in name)

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module, batch: ScoredBatch) -> torch.Tensor:
        with unwrapped(policy).disable_adapter(), eval_mode(policy):
            return sequence_logps(policy, batch, self.hidden_states)


class AdapterReference(Reference):
    """A frozen adapter of the PEFT policy (typically the SFT LoRA the run starts from) while another adapter
    trains: the base weights are held once, the reference is the SFT model and not the bare base.

    Args:
        ref_adapter, train_adapter: the adapters' names in the PeftModel.
        owned: the reference adapter was added by :func:`add_reference_adapter` (a copy), so it may be deleted
            once it is no longer needed; an adapter the user loaded is left alone.
    """

    kind = "adapter"

    def __init__(self, ref_adapter: str, train_adapter: str, owned: bool = False):
        self.ref_adapter, self.train_adapter, self.owned = ref_adapter, train_adapter, owned
        self.copy_of_policy = owned
        self.survives_release = not owned

    @torch.no_grad()
    def sync(self, policy: torch.nn.Module, alpha: float) -> None:
        """The reference adapter's A and B matrices each move towards the trained adapter's (with α = 1, a copy;
        in between, the product B·A is not the mix of the two products: a soft update of the adapter)."""
        parameters = dict(unwrapped(policy).named_parameters())
        reference_part, trained_part = f".{self.ref_adapter}.", f".{self.train_adapter}."
        for name, parameter in parameters.items():
            if reference_part in name:
                _mix_(parameter, parameters[name.replace(reference_part, trained_part)], alpha)

    def fingerprint(self, policy: torch.nn.Module) -> str:
        trained = f".{self.train_adapter}."
        return weights_fingerprint(unwrapped(policy), skip=lambda name: trained in name)

    def release(self, policy: torch.nn.Module) -> None:
        if self.owned:
            unwrapped(policy).delete_adapter(self.ref_adapter)

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module, batch: ScoredBatch) -> torch.Tensor:
        peft_model = unwrapped(policy)
        peft_model.set_adapter(self.ref_adapter, inference_mode=True)  # stays frozen while active
        try:
            with eval_mode(policy):
                return sequence_logps(policy, batch, self.hidden_states)
        finally:
            peft_model.set_adapter(self.train_adapter)  # trainable again
            freeze_adapter(peft_model, self.ref_adapter)


class PolicyAsReference(Reference):
    """The policy itself, scored in eval mode without gradients: the reference while the policy has not moved."""

    kind = "policy"

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module, batch: ScoredBatch) -> torch.Tensor:
        with eval_mode(policy):
            return sequence_logps(policy, batch, self.hidden_states)


class PrecomputedReference(Reference):
    """Reference log-probs computed before training and carried in the batch by the collator.

    ``released`` is the reference that computed them: data that arrives later is scored by it if it can still
    run, or by the policy before training has moved it from a copy of itself (see :meth:`late_reference`).
    """

    kind = "precomputed"
    runs_model = False

    def __init__(self, released: Reference | None = None, columns: tuple[str, ...] = REF_COLUMNS):
        self.released, self.batch_columns = released, columns

    def late_reference(self, trained: bool) -> Reference | None:
        """What can compute the reference columns of a dataset given after the precompute pass, or ``None``."""
        if self.released is None:
            return None
        if self.released.survives_release:
            return self.released
        return PolicyAsReference() if self.released.copy_of_policy and not trained else None

    def __call__(self, policy: torch.nn.Module, batch: ScoredBatch) -> torch.Tensor:
        # a column of lists is [G, K] (one value per answer): slot-major, as the sequences are
        columns = [batch.column(name).to(torch.float32) for name in self.batch_columns]
        return torch.cat([column.T.reshape(-1) if column.dim() == 2 else column for column in columns])
