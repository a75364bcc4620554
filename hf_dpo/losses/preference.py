"""The entry point of the paired losses: a batch's log-probs and the run's :class:`LossSettings` in, per-pair losses
and implicit rewards out. Several loss types are summed with their weights (MPO), WPO's pair weights multiply
every term, and RPO adds the chosen completion's NLL.

Try it: ``python -c "import torch; from hf_dpo.losses import dpo_loss; print(dpo_loss(*torch.zeros(4, 1)))"``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import torch

from hf_dpo.losses import paired as paired  # registers the built-in losses
from hf_dpo.losses.pair_logps import PairLogps
from hf_dpo.losses.registry import (
    LIST_LOSS_TYPES,
    UNPAIRED_LOSS_TYPES,
    apply,
    as_loss_types,
    check_names,
    registered_loss_types,
    spec,
)
from hf_dpo.losses.running_mean import RewardMean
from hf_dpo.losses.settings import LossSettings

_SETTING_NAMES = {field.name for field in fields(LossSettings)}
PAIRED_LOSS_TYPES: tuple[str, ...] = tuple(
    name for name in registered_loss_types() if name not in (*LIST_LOSS_TYPES, *UNPAIRED_LOSS_TYPES)
)  # the built-in losses on pairs
#: Every built-in ``loss_type``, the losses on pairs first, then those on lists of answers, then those on unpaired rows
#: (KTO's). A loss registered later with :func:`~hf_dpo.losses.registry.register_loss` is not in it;
#: ``registered_loss_types()`` lists it too.
LOSS_TYPES: tuple[str, ...] = (*PAIRED_LOSS_TYPES, *LIST_LOSS_TYPES, *UNPAIRED_LOSS_TYPES)


def as_pair(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    settings: LossSettings,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> PairLogps:
    """A batch's :class:`PairLogps`, read through the settings' f-divergence."""
    return PairLogps(
        chosen=chosen,
        rejected=rejected,
        ref_chosen=ref_chosen,
        ref_rejected=ref_rejected,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        f_divergence=settings.f_divergence_type or "reverse_kl",
        f_alpha=settings.f_alpha_divergence_coef,
    )


def preference_losses(
    pair: PairLogps,
    settings: LossSettings,
    *,
    pair_weights: torch.Tensor | None = None,
    reward_mean: RewardMean | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(losses, chosen_rewards, rejected_rewards)``, each ``[B]``: the weighted sum of the settings' losses on
    ``pair`` (times ``pair_weights``, WPO's, when given; plus RPO's chosen NLL when ``rpo_alpha``); the rewards are
    those the first loss compares, detached. ``reward_mean`` is ``bco_pair``'s running δ (see
    :func:`~hf_dpo.losses.paired.bco_pair_loss`)."""
    check_names(settings.loss_types, paired=True)
    values = {**asdict(settings), "reward_mean": reward_mean}
    losses = sum(weight * apply(name, pair, values) for name, weight in zip(settings.loss_types, settings.weights))
    if pair_weights is not None:  # WPO: every loss term of a pair weighted by its (no-grad) probability
        losses = losses * pair_weights
    if settings.rpo_alpha:
        # RPO (Pang et al. 2024): NLL of the chosen completion, per token, keeps its likelihood from falling.
        losses = losses - settings.rpo_alpha * pair.length_normalised().chosen
    chosen_rewards, rejected_rewards = spec(settings.loss_types[0]).rewards(pair, settings.beta)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str | Sequence[str] = "sigmoid",
    label_smoothing: float = 0.0,
    *,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    pair_weights: torch.Tensor | None = None,
    reward_mean: RewardMean | None = None,
    **settings: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair preference losses and implicit rewards.

    Args:
        policy_chosen_logps (`torch.Tensor` of shape `[B]`): summed log π(y_w|x) over the chosen completion tokens.
        policy_rejected_logps (`torch.Tensor` of shape `[B]`): summed log π(y_l|x) over the rejected completion.
        ref_chosen_logps (`torch.Tensor` of shape `[B]`): the same under the reference model (zeros when reference-free).
        ref_rejected_logps (`torch.Tensor` of shape `[B]`): likewise for the rejected completion.
        beta (`float`): the KL-penalty strength β; larger keeps the policy closer to the reference.
        loss_type (`str` or list of `str`): names from `LOSS_TYPES`; a list (or a comma-separated string) sums the
            losses, weighted by `loss_weights`.
        label_smoothing (`float`): ε in [0, 0.5): cDPO's and rDPO's label-noise rate, and the soft label of
            `exo_pair`, `aot`, `aot_pair` and `simpo`.
        chosen_lengths, rejected_lengths (`[B]` token counts): for the losses on per-token means.
        pair_weights (`[B]`): multiplies each pair's loss (WPO, see :func:`~hf_dpo.losses.pair_logps.wpo_weights`).
        reward_mean: ``bco_pair``'s running δ (:class:`~hf_dpo.losses.running_mean.RewardMean`); δ = 0 without.
        settings: any other field of :class:`~hf_dpo.losses.settings.LossSettings` (`loss_weights`, `rpo_alpha`,
            `simpo_gamma`, `orpo_lambda`, `discopop_tau`, `f_divergence_type`, `f_alpha_divergence_coef`).

    Returns:
        `(losses, chosen_rewards, rejected_rewards)`, each of shape `[B]`; the rewards are the implicit rewards
        the (first) loss compares, detached: `beta * (policy - ref)` unless the loss works on per-token means.
    """
    unknown = sorted(set(settings) - _SETTING_NAMES)
    if unknown:
        raise TypeError(f"dpo_loss got unexpected keyword argument(s) {unknown}")
    names = as_loss_types(loss_type)
    check_names(names, paired=True)
    loss_settings = LossSettings(loss_types=tuple(names), beta=beta, label_smoothing=label_smoothing, **settings)
    pair = as_pair(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        loss_settings,
        chosen_lengths,
        rejected_lengths,
    )
    return preference_losses(pair, loss_settings, pair_weights=pair_weights, reward_mean=reward_mean)
