"""Unpaired preference losses (KTO): each completion is labelled desirable or not, with no partner.

With the implied reward ``r = log π(y|x) - log π_ref(y|x)`` of each completion, :func:`kto_loss` compares ``r``
with a reference point ``z₀``, a batch estimate of ``KL(π‖π_ref)`` from mismatched prompt/completion pairs
(:func:`kto_kl_estimate`). The trainer's unpaired step (:mod:`hf_dpo.trainer.step`) calls both; the loss types are
:data:`hf_dpo.losses.registry.UNPAIRED_LOSS_TYPES`.

Try it: ``python -c "import torch; from hf_dpo.losses.unpaired import kto_loss; print(kto_loss(torch.zeros(2), torch.zeros(2), torch.tensor([True, False])))"``
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hf_dpo.losses.registry import UNPAIRED_LOSS_TYPES


def kto_kl_estimate(
    kl_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """KTO's reference point ``z₀ = max(0, mean[log π(y'|x) - log π_ref(y'|x)])`` over mismatched pairs
    ``(x, y')`` (each prompt with another row's completion): a batch estimate of ``KL(π‖π_ref)``, without gradient.
    ``all_reduce`` sums over processes, so the mean is over every process's rows.

    >>> kto_kl_estimate(torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -5.0]))  # mean(1, 0)
    tensor(0.5000)
    """
    differences = (kl_logps - ref_kl_logps).detach().double()
    totals = torch.stack([differences.sum(), differences.new_tensor(differences.numel())])
    if all_reduce is not None:
        totals = all_reduce(totals)
    return (totals[0] / totals[1].clamp(min=1)).clamp(min=0).to(kl_logps.dtype)


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor | float = 0.0,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    loss_type: str = "kto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024, eqs. 7-8) on unpaired completions; returns ``(losses, rewards)``, each ``[N]``.

    With the implied reward ``r = log π(y|x) - log π_ref(y|x)`` and the reference point ``z₀`` (:func:`kto_kl_estimate`),
    the value of a completion is ``v = λ_D·σ(β(r - z₀))`` if it is desirable and ``λ_U·σ(β(z₀ - r))`` if not; the
    loss is ``λ_y - v``: ``λ_D·(1 - σ(β(r - z₀)))`` or ``λ_U·(1 - σ(β(z₀ - r)))``. ``λ_D``, ``λ_U`` are
    ``desirable_weight`` and ``undesirable_weight``.

    ``loss_type="apo_zero_unpaired"`` (APO-zero, D'Oosterlinck et al. 2024, unpaired as TRL has it) needs no
    reference point: ``λ_D·(1 - σ(βr))`` for desirable completions, ``λ_U·σ(βr)`` for the others.

    Args:
        policy_logps, ref_logps (`torch.Tensor` of shape `[N]`): summed completion log-probs.
        desirable (`torch.Tensor` of shape `[N]`, bool): each completion's label.
        kl: ``z₀`` (a scalar; ignored by ``apo_zero_unpaired``).
    """
    logratios = policy_logps - ref_logps
    if loss_type == "kto":
        desirable_losses = 1.0 - torch.sigmoid(beta * (logratios - kl))
        undesirable_losses = 1.0 - torch.sigmoid(beta * (kl - logratios))
    elif loss_type == "apo_zero_unpaired":
        desirable_losses = 1.0 - torch.sigmoid(beta * logratios)
        undesirable_losses = torch.sigmoid(beta * logratios)
    else:
        raise ValueError(f"loss_type={loss_type!r} is not one of {', '.join(UNPAIRED_LOSS_TYPES)}")
    losses = torch.where(
        desirable.bool(), desirable_weight * desirable_losses, undesirable_weight * undesirable_losses
    )
    return losses, (beta * logratios).detach()
