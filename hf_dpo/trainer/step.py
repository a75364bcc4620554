"""A step's loss and the per-row values the metric windows average (:mod:`hf_dpo.trainer.metrics`), from what the
step's passes produced: the policy's :class:`~hf_dpo.logprobs.CompletionScores` and the reference's log-probs.

:func:`pair_loss` reads a batch of ``[chosen; rejected]`` sequences, :func:`list_loss` lists of answers (slot-major
sequences; pairs are lists of 2), :func:`unpaired_loss` KTO's ``[completions; KL counterparts]``. Both are functions of tensors and settings: the trainer runs the passes (``DPOTrainer._step``:
batch, policy, reference, loss) and hands their results here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hf_dpo.batch import ScoredBatch
from hf_dpo.batch.lists import MASK_COLUMN, PAIR_SCORES
from hf_dpo.data.columns import LABEL_COLUMN, SCORES_COLUMN
from hf_dpo.logprobs import CompletionScores
from hf_dpo.losses import (
    ListLogps,
    LossSettings,
    RewardMean,
    as_pair,
    kto_kl_estimate,
    kto_loss,
    list_losses,
    preference_losses,
    ranking_values,
    wpo_weights,
)
from hf_dpo.losses.ranking import masked_mean
from hf_dpo.trainer.metrics import AUX_LOSS, LOSS, MEAN_LOGRATIO

Values = dict[str, torch.Tensor]


def pair_loss(
    policy: CompletionScores,
    ref_logps: torch.Tensor,
    batch: ScoredBatch,
    settings: LossSettings,
    *,
    aux_loss: torch.Tensor | None = None,
    reward_mean: RewardMean | None = None,
) -> tuple[torch.Tensor, Values]:
    """Per-pair losses ``[B]`` and per-pair values ``{column: [B]}``.

    Args:
        policy: the policy's scores of the batch's ``2B`` sequences, ``[chosen; rejected]``.
        ref_logps: the reference's log-probs of the same sequences, ``[2B]``.
        batch: the step's batch (its token counts feed the token-level metrics).
        settings: the run's loss settings.
        aux_loss: a mixture-of-experts router's load-balancing loss; its weight is the settings'.
        reward_mean: ``bco_pair``'s running δ (a frozen view in evaluation), or ``None`` (δ = 0).
    """
    chosen_logps, rejected_logps = policy.logps.chunk(2)
    chosen_lengths, rejected_lengths = policy.num_tokens.chunk(2)
    ref_chosen_logps, ref_rejected_logps = ref_logps.chunk(2)
    pair_weights = None
    if settings.use_weighting:
        chosen_aligned, rejected_aligned = policy.stat("aligned_logps").chunk(2)
        pair_weights = wpo_weights(chosen_aligned, chosen_lengths, rejected_aligned, rejected_lengths)
    pair = as_pair(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, settings, chosen_lengths, rejected_lengths
    )
    losses, chosen_rewards, rejected_rewards = preference_losses(
        pair, settings, pair_weights=pair_weights, reward_mean=reward_mean
    )
    losses, aux_values = with_aux_loss(losses, aux_loss, settings.router_aux_loss_coef)
    rows = chosen_logps.shape[0]
    chosen, rejected = torch.arange(rows, device=losses.device), torch.arange(rows, 2 * rows, device=losses.device)
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
        AUX_LOSS: aux_values,
        **token_values(policy, batch.input_tokens, chosen, rejected),
    }
    return losses, {name: value.detach() for name, value in values.items()}


def list_loss(
    policy: CompletionScores,
    ref_logps: torch.Tensor,
    batch: ScoredBatch,
    settings: LossSettings,
    *,
    aux_loss: torch.Tensor | None = None,
    reward_mean: RewardMean | None = None,
) -> tuple[torch.Tensor, Values]:
    """Per-list losses ``[G]`` and per-list values ``{column: [G]}``, the contract of :func:`pair_loss` (whose
    arguments these are) on a batch of lists of answers (a pair collator's batch reads as lists of 2)."""
    lists = list_logps(policy, ref_logps, batch)
    losses, rewards = list_losses(lists, settings, reward_mean=reward_mean)
    losses, aux_values = with_aux_loss(losses, aux_loss, settings.router_aux_loss_coef)
    best, rest = lists.best(), lists.valid & ~lists.best()
    ranking = ranking_values(rewards, lists.scores, lists.valid)
    chosen_rewards, rejected_rewards = masked_mean(rewards, best), masked_mean(rewards, rest)
    values = {
        "rewards/chosen": chosen_rewards,  # each list's best answer(s)
        "rewards/rejected": rejected_rewards,  # the others
        "rewards/accuracies": ranking["pair_accuracy"],
        "rewards/margins": chosen_rewards - rejected_rewards,
        "rewards/top1": ranking["top1"],
        "rewards/kendall_tau": ranking["kendall_tau"],
        "logps/chosen": masked_mean(lists.policy, best),
        "logps/rejected": masked_mean(lists.policy, rest),
        "logps/ref_margin": masked_mean(lists.reference, best) - masked_mean(lists.reference, rest),
        MEAN_LOGRATIO: masked_mean(lists.logratios, lists.valid),
        LOSS: losses,
        AUX_LOSS: aux_values,
        **list_token_values(policy, batch.input_tokens, best, rest),
    }
    return losses, {name: value.detach() for name, value in values.items()}


def list_logps(policy: CompletionScores, ref_logps: torch.Tensor, batch: ScoredBatch) -> ListLogps:
    """The batch's sequences (slot-major: sequence ``group + G·(slot - 1)``) as ``[G, K]`` lists of answers."""
    mask = batch.columns.get(MASK_COLUMN)
    if mask is None:  # a pair collator's [chosen; rejected]: lists of 2
        scores = policy.logps.new_tensor(PAIR_SCORES).expand(policy.logps.shape[0] // 2, 2)
        mask = torch.ones_like(scores, dtype=torch.bool)
    else:
        scores = batch.column(SCORES_COLUMN)
    if batch.num_sequences != mask.numel():
        raise ValueError(
            f"a batch of {batch.num_sequences} sequences cannot be {mask.shape[0]} lists of {mask.shape[1]}"
        )

    def grid(values: torch.Tensor) -> torch.Tensor:
        return values.reshape(mask.shape[1], mask.shape[0]).T

    return ListLogps(grid(policy.logps), grid(ref_logps), scores.to(policy.logps.dtype), mask, grid(policy.num_tokens))


def list_token_values(
    scores: CompletionScores, input_tokens: torch.Tensor, best: torch.Tensor, rest: torch.Tensor
) -> Values:
    """:func:`token_values` over lists: each list's best answers as its chosen side, the others as rejected."""
    best, rest = best.float(), rest.float()

    def summed(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (values.float().reshape(weights.shape[1], weights.shape[0]).T * weights).sum(dim=1)

    return {
        "chosen_logits_sum": summed(scores.stat("mean_logits"), best),
        "rejected_logits_sum": summed(scores.stat("mean_logits"), rest),
        "chosen_top1": summed(scores.stat("top1"), best),
        "entropy_sum": summed(scores.stat("entropy"), best + rest),
        "chosen_tokens": summed(scores.num_tokens, best),
        "rejected_tokens": summed(scores.num_tokens, rest),
        "input_tokens": summed(input_tokens, best + rest),
    }


def unpaired_loss(
    policy: CompletionScores,
    ref_logps: torch.Tensor,
    batch: ScoredBatch,
    settings: LossSettings,
    *,
    aux_loss: torch.Tensor | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, Values]:
    """KTO on a ``[completions; KL counterparts]`` batch: per-row losses ``[N]`` and per-row values.

    The KL half gets no gradient: its log-probs only set the reference point ``z₀`` (summed over processes by
    ``reduce``). ``apo_zero_unpaired`` batches have no KL half.
    """
    desirable = batch.column(LABEL_COLUMN)
    rows = desirable.shape[0]
    kl = policy.logps.new_zeros(())
    if policy.logps.shape[0] == 2 * rows:  # the collator added the KL counterparts
        kl = kto_kl_estimate(policy.logps[rows:], ref_logps[rows:], reduce)
    logps = policy.logps[:rows]
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
    losses, aux_values = with_aux_loss(losses, aux_loss, settings.router_aux_loss_coef)
    desirable_float, undesirable_float = desirable.float(), (~desirable.bool()).float()
    # the side of the reference point each completion's implied reward is on: above for desirable ones
    above = rewards > settings.beta * kl
    own = torch.arange(rows, device=losses.device)
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
        AUX_LOSS: aux_values,
        # desirable rows count as chosen, the others as rejected; the KL half is left out, as TRL leaves it out
        **token_values(policy, batch.input_tokens, own, own, desirable_float, undesirable_float),
    }
    return losses, {name: value.detach() for name, value in values.items()}


def with_aux_loss(
    losses: torch.Tensor, aux_loss: torch.Tensor | None, coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``losses`` plus ``coef`` times a router's load-balancing loss (the same scalar for every row, so the mean
    adds it once), and the loss itself per row for the metrics (TRL logs it unweighted; 0 without one)."""
    if aux_loss is None or not coef:
        return losses, losses.new_zeros(()).expand_as(losses)
    return losses + coef * aux_loss, aux_loss.expand_as(losses)


def token_values(
    scores: CompletionScores,
    input_tokens: torch.Tensor,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    chosen_weight: torch.Tensor | float = 1.0,
    rejected_weight: torch.Tensor | float = 1.0,
) -> Values:
    """Per-row sums behind the token-level metrics (see :data:`hf_dpo.trainer.metrics.RATIOS`): each row's chosen
    and rejected sequences (indices into the scored sequences), weighted (KTO: a row is one or the other)."""

    def per_row(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return values[chosen] * chosen_weight, values[rejected] * rejected_weight

    chosen_logits, rejected_logits = per_row(scores.stat("mean_logits"))
    chosen_entropy, rejected_entropy = per_row(scores.stat("entropy"))
    chosen_tokens, rejected_tokens = per_row(scores.num_tokens.float())
    chosen_inputs, rejected_inputs = per_row(input_tokens.float())
    return {
        "chosen_logits_sum": chosen_logits,
        "rejected_logits_sum": rejected_logits,
        "chosen_top1": per_row(scores.stat("top1"))[0],
        "entropy_sum": chosen_entropy + rejected_entropy,
        "chosen_tokens": chosen_tokens,
        "rejected_tokens": rejected_tokens,
        "input_tokens": chosen_inputs + rejected_inputs,
    }
