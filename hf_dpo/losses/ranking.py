"""Lists of answers to one prompt, and how well a set of rewards orders them: the ordered pairs a list holds, its
best answers, and the ranking metrics (pairwise accuracy, top-1, Kendall's τ_b).

Every function reads a batch of ``G`` lists padded to ``K`` answers: ``scores`` ``[G, K]`` (higher is better; a
ranking is given as negated ranks) and ``valid`` ``[G, K]`` bool (False on the padding of a shorter list). An
*ordered pair* ``(i, j)`` of a list is two of its answers with ``s_i > s_j``: tied answers make no pair.

Try it: ``python -c "import torch; from hf_dpo.losses.ranking import ranking_values as r; print(r(torch.tensor([[3., 1, 2]]), torch.tensor([[2., 1, 0]]), torch.ones(1, 3, dtype=torch.bool)))"``
"""

from __future__ import annotations

import torch


def better_than(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[G, K, K]`` bool: ``[g, i, j]`` when answer ``i`` of list ``g`` is better than its answer ``j`` (both real).

    >>> better_than(torch.tensor([[2.0, 1.0, 1.0]]), torch.tensor([[True, True, False]])).int()[0]
    tensor([[0, 1, 0],
            [0, 0, 0],
            [0, 0, 0]], dtype=torch.int32)
    """
    both = valid[:, :, None] & valid[:, None, :]
    return both & (scores[:, :, None] > scores[:, None, :])


def ordered_pairs(scores: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(group, better, worse)``, each ``[P]``: every ordered pair of the batch, group by group (one host sync: the
    number of pairs)."""
    group, better, worse = torch.nonzero(better_than(scores, valid), as_tuple=True)
    return group, better, worse


def best_answers(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[G, K]`` bool: the answers with their list's highest score (several where the best are tied)."""
    top = torch.where(valid, scores, -torch.inf).amax(dim=1, keepdim=True)
    return valid & (scores == top)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per list, the mean of ``values`` over ``mask`` (0 where the mask is empty): ``[G]``."""
    weights = mask.to(values.dtype)
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def ranking_values(rewards: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """How well ``rewards`` ``[G, K]`` order each list, per list (``[G]`` each, no gradient):

    - ``pair_accuracy``: the share of the list's ordered pairs whose better answer gets the strictly higher reward
      (on a pair: TRL's ``rewards/accuracies``);
    - ``top1``: 1 when an answer with the best score gets a reward strictly above every answer without it;
    - ``kendall_tau``: Kendall's τ_b between rewards and scores, ties on either side handled, 0 where every reward
      is equal (before training).

    >>> values = ranking_values(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([[2.0, 1.0, 0.0]]), torch.ones(1, 3).bool())
    >>> {name: round(value.item(), 4) for name, value in values.items()}  # pairs (0,1) (0,2) right, (1,2) wrong
    {'pair_accuracy': 0.6667, 'top1': 1.0, 'kendall_tau': 0.3333}
    """
    rewards, scores = rewards.detach().float(), scores.float()
    pairs = better_than(scores, valid)
    right = pairs & (rewards[:, :, None] > rewards[:, None, :])
    pair_accuracy = right.flatten(1).sum(1) / pairs.flatten(1).sum(1).clamp(min=1)
    best = best_answers(scores, valid)
    top_reward = torch.where(best, rewards, -torch.inf).amax(dim=1)
    others = torch.where(valid & ~best, rewards, -torch.inf).amax(dim=1)
    top1 = (top_reward > others).float()
    # τ_b over unordered pairs (each counted twice below, which cancels): Σ sign·sign / sqrt(n_scores · n_rewards)
    both = valid[:, :, None] & valid[:, None, :]
    score_signs = torch.sign(scores[:, :, None] - scores[:, None, :]) * both
    reward_signs = torch.sign(rewards[:, :, None] - rewards[:, None, :]) * both
    agreement = (score_signs * reward_signs).flatten(1).sum(1)
    untied = (score_signs != 0).flatten(1).sum(1) * (reward_signs != 0).flatten(1).sum(1)
    kendall_tau = torch.where(untied > 0, agreement / untied.clamp(min=1).sqrt(), 0.0)
    return {"pair_accuracy": pair_accuracy, "top1": top1, "kendall_tau": kendall_tau}
