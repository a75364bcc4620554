"""One training or evaluation step: the policy's single forward pass, the reference, the loss and the per-row values
the metric windows average (:mod:`hf_dpo.trainer.metrics`); :func:`preference_step` on ``[chosen; rejected]`` pairs,
:func:`unpaired_step` on KTO's ``[completions; KL counterparts]``.

The trainer calls :func:`preference_step` from ``compute_loss`` and ``prediction_step``; everything it needs is
passed in, so the step reads top to bottom without the Trainer's state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hf_dpo.batch.shared_prompt import input_token_counts
from hf_dpo.data.columns import LABEL_COLUMN
from hf_dpo.logprobs.scoring import CompletionScores, sequence_scores
from hf_dpo.losses import (
    LossSettings,
    RewardMean,
    kto_kl_estimate,
    kto_loss,
    pair_logps,
    preference_losses,
    wpo_weights,
)
from hf_dpo.trainer.metrics import AUX_LOSS, LOSS, MEAN_LOGRATIO

ReferenceFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def preference_step(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    reference: ReferenceFn,
    settings: LossSettings,
    *,
    token_weights: torch.Tensor | None = None,
    aux_loss_coef: float = 0.0,
    reward_mean: RewardMean | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair losses ``[B]`` (the router's load-balancing loss included) and per-pair values ``{column: [B]}``.

    Args:
        model: the policy; ``inputs`` the collator's batch (``input_ids``, ``attention_mask``, ``labels``, ...).
        reference: ``reference(model, inputs) -> ref_logps``, ``[2B]`` in the batch's ``[chosen; rejected]`` order.
        settings: the run's loss settings.
        token_weights: LD-DPO's weights per label position (``[2B, T]``), or ``None``.
        aux_loss_coef: weight of a mixture-of-experts router's ``aux_loss``; 0: not requested.
        reward_mean: ``bco_pair``'s running δ, or ``None`` (δ = 0).
    """
    forward_kwargs = {"output_router_logits": True} if aux_loss_coef else {}
    scores, outputs = sequence_scores(model, inputs, token_weights, **forward_kwargs)
    chosen_logps, rejected_logps = scores.logps.chunk(2)  # the collator stacks [chosen; rejected]
    chosen_lengths, rejected_lengths = scores.num_tokens.chunk(2)
    ref_chosen_logps, ref_rejected_logps = reference(model, inputs).chunk(2)
    pair_weights = None
    if settings.use_weighting:
        chosen_aligned, rejected_aligned = scores.stat("aligned_logps").chunk(2)
        pair_weights = wpo_weights(chosen_aligned, chosen_lengths, rejected_aligned, rejected_lengths)
    pair = pair_logps(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, settings, chosen_lengths, rejected_lengths
    )
    if reward_mean is not None and not model.training:
        reward_mean = reward_mean.frozen()  # evaluation reads the training statistics, never moves them
    losses, chosen_rewards, rejected_rewards = preference_losses(
        pair, settings, pair_weights=pair_weights, reward_mean=reward_mean
    )
    aux_loss = outputs.aux_loss if aux_loss_coef else None
    if aux_loss is not None:
        losses = losses + aux_loss_coef * aux_loss  # the same scalar for every pair: the mean adds coef·aux
    values = {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
        "rewards/margins": chosen_rewards - rejected_rewards,
        "logps/chosen": chosen_logps,
        "logps/rejected": rejected_logps,
        "logps/ref_margin": ref_chosen_logps - ref_rejected_logps,
        # the mean log-ratio log π - log π_ref over both completions of the data: how far the policy moved on
        # them (a KL only in expectation over the policy's own samples, which these are not)
        MEAN_LOGRATIO: 0.5 * ((chosen_logps - ref_chosen_logps) + (rejected_logps - ref_rejected_logps)),
        LOSS: losses,
        AUX_LOSS: (aux_loss if aux_loss is not None else losses.new_zeros(())).expand_as(losses),
        **token_values(scores, input_token_counts(inputs)),
    }
    return losses, {name: value.detach() for name, value in values.items()}


def token_values(scores: CompletionScores, input_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-pair sums behind the token-level metrics (see :data:`hf_dpo.trainer.metrics.RATIOS`); ``input_tokens``: each
    sequence's prompt and completion tokens, ``[2B]``."""
    chosen_logits, rejected_logits = scores.stat("mean_logits").chunk(2)
    chosen_top1, _ = scores.stat("top1").chunk(2)
    chosen_entropy, rejected_entropy = scores.stat("entropy").chunk(2)
    chosen_tokens, rejected_tokens = scores.num_tokens.chunk(2)
    chosen_inputs, rejected_inputs = input_tokens.chunk(2)
    return {
        "chosen_logits_sum": chosen_logits,
        "rejected_logits_sum": rejected_logits,
        "chosen_top1": chosen_top1,
        "entropy_sum": chosen_entropy + rejected_entropy,
        "chosen_tokens": chosen_tokens.float(),
        "rejected_tokens": rejected_tokens.float(),
        "input_tokens": (chosen_inputs + rejected_inputs).float(),
    }


def unpaired_step(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    reference: ReferenceFn,
    settings: LossSettings,
    *,
    aux_loss_coef: float = 0.0,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KTO on a ``[completions; KL counterparts]`` batch (:class:`~hf_dpo.batch.padded.UnpairedDataCollator`): one
    forward pass over both halves, per-row losses ``[N]`` and per-row values ``{column: [N]}``.

    The KL half gets no gradient: its log-probs only set the reference point ``z₀`` (summed over processes by
    ``all_reduce``). ``apo_zero_unpaired`` batches have no KL half.
    """
    desirable = inputs[LABEL_COLUMN]
    rows = desirable.shape[0]
    forward_kwargs = {"output_router_logits": True} if aux_loss_coef else {}
    scores, outputs = sequence_scores(model, inputs, **forward_kwargs)
    ref_logps = reference(model, inputs)
    kl = scores.logps.new_zeros(())
    if scores.logps.shape[0] == 2 * rows:  # the collator added the KL counterparts
        kl = kto_kl_estimate(scores.logps[rows:], ref_logps[rows:], all_reduce)
    logps = scores.logps[:rows]
    losses, rewards = kto_loss(
        logps,
        ref_logps[:rows],
        desirable,
        kl,
        beta=settings.beta,
        desirable_weight=settings.desirable_weight,
        undesirable_weight=settings.undesirable_weight,
        loss_type=settings.loss_types[0],
    )
    aux_loss = outputs.aux_loss if aux_loss_coef else None
    if aux_loss is not None:
        losses = losses + aux_loss_coef * aux_loss
    desirable_float, undesirable_float = desirable.float(), (~desirable.bool()).float()
    # the side of the reference point each completion's implied reward is on: above for desirable ones
    above = rewards > settings.beta * kl
    values = {
        "rewards/accuracies": torch.where(desirable.bool(), above, ~above & (rewards < settings.beta * kl)).float(),
        "chosen_rewards_sum": rewards * desirable_float,
        "rejected_rewards_sum": rewards * undesirable_float,
        "chosen_logps_sum": logps * desirable_float,
        "rejected_logps_sum": logps * undesirable_float,
        "count/desirable": desirable_float,
        "count/undesirable": undesirable_float,
        "kl": kl.expand(rows),
        LOSS: losses,
        AUX_LOSS: (aux_loss if aux_loss is not None else losses.new_zeros(())).expand(rows),
        **unpaired_token_values(scores, input_token_counts(inputs), desirable),
    }
    return losses, {name: value.detach() for name, value in values.items()}


def unpaired_token_values(
    scores: CompletionScores, input_tokens: torch.Tensor, desirable: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-row sums behind the token-level metrics: ``chosen`` means the desirable rows, ``rejected`` the others
    (the KL half is left out, as TRL leaves it out)."""
    rows = desirable.shape[0]
    chosen, rejected = desirable.float(), (~desirable.bool()).float()
    tokens = scores.num_tokens[:rows].float()
    logits, top1 = scores.stat("mean_logits")[:rows], scores.stat("top1")[:rows]
    return {
        "chosen_logits_sum": logits * chosen,
        "rejected_logits_sum": logits * rejected,
        "chosen_top1": top1 * chosen,
        "entropy_sum": scores.stat("entropy")[:rows],
        "chosen_tokens": tokens * chosen,
        "rejected_tokens": tokens * rejected,
        "input_tokens": input_tokens[:rows].float(),
    }
