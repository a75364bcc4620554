"""Preference losses as pure functions of per-sequence log-probabilities.

Every loss takes the summed completion log-probs of the policy and the reference for the chosen (``y_w``) and the
rejected (``y_l``) completion of each pair, each a float tensor of shape ``[B]``, and returns
``(losses, chosen_rewards, rejected_rewards)``, each of shape ``[B]``. The implicit rewards are
``beta * (log π(y|x) - log π_ref(y|x))``, detached: they are metrics, never a path for gradients.

A loss is one small function registered under its ``loss_type`` name; :func:`dpo_loss` looks the name up in the
registry, so adding a loss never touches the trainer.

Try it: ``python -c "import torch; from hf_dpo.losses import dpo_loss; print(dpo_loss(*torch.zeros(4, 1)))"``
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[..., torch.Tensor]
_REGISTRY: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Register a loss function under ``name``; the function maps the logit ``h`` (see below) to per-pair losses."""

    def decorator(fn: LossFn) -> LossFn:
        if name in _REGISTRY:
            raise ValueError(f"loss_type {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


@register_loss("sigmoid")
def sigmoid_loss(logits: torch.Tensor, beta: float, label_smoothing: float = 0.0, **_: object) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, eq. 7) with conservative label smoothing (cDPO, Mitchell 2023).

    With ``h = (log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))`` (``logits``, shape ``[B]``):

        loss = -(1 - ε) · log σ(β h) - ε · log σ(-β h)

    ``ε = 0`` is plain DPO; ``ε`` is the assumed probability that a preference label is flipped.
    """
    return -(1.0 - label_smoothing) * F.logsigmoid(beta * logits) - label_smoothing * F.logsigmoid(-beta * logits)


LOSS_TYPES: tuple[str, ...] = tuple(_REGISTRY)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    **loss_kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair preference losses and implicit rewards.

    Args:
        policy_chosen_logps (`torch.Tensor` of shape `[B]`): summed log π(y_w|x) over the chosen completion tokens.
        policy_rejected_logps (`torch.Tensor` of shape `[B]`): summed log π(y_l|x) over the rejected completion.
        ref_chosen_logps (`torch.Tensor` of shape `[B]`): the same under the reference model (zeros when reference-free).
        ref_rejected_logps (`torch.Tensor` of shape `[B]`): likewise for the rejected completion.
        beta (`float`): the KL-penalty strength β; larger keeps the policy closer to the reference.
        loss_type (`str`): one of `LOSS_TYPES`.
        label_smoothing (`float`): cDPO's ε in [0, 0.5).
        loss_kwargs: hyper-parameters of other loss types, passed through to the registered function.

    Returns:
        `(losses, chosen_rewards, rejected_rewards)`, each of shape `[B]`; the rewards are
        `beta * (policy - ref)`, detached.
    """
    if loss_type not in _REGISTRY:
        raise ValueError(f"loss_type={loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    logits = chosen_logratios - rejected_logratios  # h: how much more the policy prefers y_w than the reference does
    losses = _REGISTRY[loss_type](logits, beta=beta, label_smoothing=label_smoothing, **loss_kwargs)
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses, chosen_rewards, rejected_rewards
