"""The losses on lists of answers to one prompt, ranked or scored: pure functions of ``[G, K]`` log-prob matrices.

A batch holds ``G`` lists, padded to ``K`` answers (:class:`ListLogps`; ``valid`` is False on the padding of a shorter
list). With ``r_k = log π(y_k|x) - log π_ref(y_k|x)`` the log-ratio of answer ``k`` and ``z_k = β·r_k`` its implicit
reward, each loss returns one value per list (``[G]``):

- ``plackett_luce`` (Rafailov et al. 2023, DPO, Appendix A.3): the Plackett-Luce likelihood of the ranking,
  ``-Σ_k log( exp(z_k) / Σ_{j ranked at or below k} exp(z_j) )``. Ties follow Breslow's rule (each tied answer's
  denominator holds every answer tied with it or worse), so the loss does not depend on how ties are listed; on a
  list of 2 it is DPO's sigmoid loss.
- ``best_vs_rest`` (InfoNCA, Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit
  Rewards", eq. 7): the cross-entropy of the policy's ``softmax(z)`` against the targets ``softmax(s / α)`` of the
  scores ``s`` at temperature ``α`` (``score_temperature``); ``α = 0`` puts the whole target on the best answer(s).
  On a list of 2 with ``α = 0`` it is DPO's sigmoid loss.
- ``nca`` (NCA, the same paper, eq. 11): ``-Σ_k p_k log σ(z_k) - (1/K) Σ_k log σ(-z_k)`` with the same targets
  ``p``: absolute rewards, so the best answer's likelihood is not pushed down with the others; on a list of 2 with
  ``α = 0`` it is ``nca_pair``.
- ``all_pairs`` and every paired loss type (:mod:`hf_dpo.losses.paired`): the paired loss on every ordered pair of
  the list (the binarized expansion, with each answer computed once), averaged over the list's pairs, so each prompt
  weighs the same; ``all_pairs`` uses ``list_pair_loss_type`` (``sigmoid`` unless set).

Try it: ``python -c "import torch; from hf_dpo.losses.lists import *; print(list_losses(ListLogps.of(torch.tensor([[-1., -3.]]), torch.tensor([[-2., -2.]]), torch.tensor([[1., 0.]])), LossSettings(loss_types=('plackett_luce',), beta=0.5)))"``
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hf_dpo.losses import paired as paired  # registers the paired losses all_pairs applies
from hf_dpo.losses.pair_logps import PairLogps
from hf_dpo.losses.ranking import best_answers, masked_mean, ordered_pairs
from hf_dpo.losses.registry import apply, spec
from hf_dpo.losses.running_mean import RewardMean
from hf_dpo.losses.settings import LossSettings


@dataclass(frozen=True)
class ListLogps:
    """The summed completion log-probs of a batch of lists; every tensor ``[G, K]``.

    Attributes:
        policy, reference: log π(y_k|x) and log π_ref(y_k|x) (any value on the padding).
        scores: each answer's score, higher is better (a ranking as negated ranks).
        valid: True on real answers, False on the padding of a shorter list.
        lengths: each answer's completion tokens (for losses on per-token means), or ``None``.
    """

    policy: torch.Tensor
    reference: torch.Tensor
    scores: torch.Tensor
    valid: torch.Tensor
    lengths: torch.Tensor | None = None

    @classmethod
    def of(cls, policy: torch.Tensor, reference: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> ListLogps:
        """Every answer real unless ``valid`` says otherwise."""
        valid = kwargs.pop("valid", None)
        valid = torch.ones_like(policy, dtype=torch.bool) if valid is None else valid
        return cls(policy, reference, scores.to(policy.dtype), valid, **kwargs)

    @property
    def logratios(self) -> torch.Tensor:
        """``r`` ``[G, K]``, 0 on the padding."""
        return torch.where(self.valid, self.policy - self.reference, torch.zeros_like(self.policy))

    def best(self) -> torch.Tensor:
        """``[G, K]`` bool: each list's best answer(s)."""
        return best_answers(self.scores, self.valid)


ListLossFn = Callable[..., torch.Tensor]
LIST_LOSSES: dict[str, ListLossFn] = {}
_PARAMETERS: dict[str, tuple[str, ...]] = {}  # each list loss's keyword-only parameters


def register_list_loss(name: str) -> Callable[[ListLossFn], ListLossFn]:
    """Register ``fn(lists: ListLogps, *, beta, ...) -> losses [G]`` (keyword-only parameters name the fields of
    :class:`~hf_dpo.losses.settings.LossSettings` it reads)."""

    def decorator(fn: ListLossFn) -> ListLossFn:
        parameters = list(inspect.signature(fn).parameters.values())[1:]
        if any(parameter.kind is not inspect.Parameter.KEYWORD_ONLY for parameter in parameters):
            raise TypeError(f"list loss {name!r}: parameters after the lists must be keyword-only")
        LIST_LOSSES[name], _PARAMETERS[name] = fn, tuple(parameter.name for parameter in parameters)
        return fn

    return decorator


@register_list_loss("plackett_luce")
def plackett_luce_loss(lists: ListLogps, *, beta: float) -> torch.Tensor:
    """``-Σ_k [z_k - log Σ_{j: s_j ≤ s_k} exp(z_j)]`` over each list's real answers (see the module docstring)."""
    rewards = beta * lists.logratios
    below = lists.valid[:, None, :] & (lists.scores[:, None, :] <= lists.scores[:, :, None])  # [g, k, j]
    below |= torch.eye(rewards.shape[1], dtype=torch.bool, device=rewards.device)  # a padded k keeps a finite sum
    denominators = torch.logsumexp(torch.where(below, rewards[:, None, :], -torch.inf), dim=2)
    terms = torch.where(lists.valid, rewards - denominators, torch.zeros_like(rewards))
    return -terms.sum(dim=1)


def score_targets(lists: ListLogps, temperature: float) -> torch.Tensor:
    """``softmax(s / α)`` over each list's real answers; ``α = 0``: all of it on the best answer(s), evenly."""
    if temperature == 0:
        best = lists.best().to(lists.policy.dtype)
        return best / best.sum(dim=1, keepdim=True)
    logits = torch.where(lists.valid, lists.scores / temperature, -torch.inf)
    return torch.softmax(logits.float(), dim=1).to(lists.policy.dtype)


@register_list_loss("best_vs_rest")
def best_vs_rest_loss(lists: ListLogps, *, beta: float, score_temperature: float = 0.0) -> torch.Tensor:
    """InfoNCA: ``-Σ_k p_k log softmax(z)_k`` with ``p = softmax(s / α)`` (see the module docstring)."""
    rewards = torch.where(lists.valid, beta * lists.logratios, -torch.inf)
    log_model = torch.where(lists.valid, torch.log_softmax(rewards, dim=1), 0.0)  # no 0 * -inf on the padding
    return -(score_targets(lists, score_temperature) * log_model).sum(dim=1)


@register_list_loss("nca")
def nca_loss(lists: ListLogps, *, beta: float, score_temperature: float = 0.0) -> torch.Tensor:
    """NCA: ``-Σ_k p_k log σ(z_k) - (1/K) Σ_k log σ(-z_k)`` over each list's ``K`` real answers."""
    rewards = beta * lists.logratios
    targets = score_targets(lists, score_temperature)
    valid = lists.valid.to(rewards.dtype)
    attract = -(targets * F.logsigmoid(rewards) * valid).sum(dim=1)
    repel = -(F.logsigmoid(-rewards) * valid).sum(dim=1) / valid.sum(dim=1)
    return attract + repel


def pairs_of(lists: ListLogps, settings: LossSettings) -> tuple[PairLogps, torch.Tensor]:
    """Every ordered pair of the batch as a :class:`PairLogps` (``[P]``: better answer as chosen), and each pair's
    list (``[P]``)."""
    group, better, worse = ordered_pairs(lists.scores, lists.valid)
    lengths = lists.lengths
    pair = PairLogps(
        chosen=lists.policy[group, better],
        rejected=lists.policy[group, worse],
        ref_chosen=lists.reference[group, better],
        ref_rejected=lists.reference[group, worse],
        chosen_lengths=None if lengths is None else lengths[group, better],
        rejected_lengths=None if lengths is None else lengths[group, worse],
        f_divergence=settings.f_divergence_type or "reverse_kl",
        f_alpha=settings.f_alpha_divergence_coef,
    )
    return pair, group


def pairwise_loss(lists: ListLogps, name: str, pair: PairLogps, group: torch.Tensor, values: dict) -> torch.Tensor:
    """Paired loss ``name`` on the batch's ordered pairs, averaged per list: ``[G]`` (0 for a list without pairs)."""
    losses = apply(name, pair, values)
    totals = losses.new_zeros(lists.policy.shape[0]).index_add(0, group, losses)
    counts = torch.zeros_like(totals).index_add(0, group, torch.ones_like(losses))
    return totals / counts.clamp(min=1)


def paired_name(name: str, settings: LossSettings) -> str:
    """The paired loss a list loss type applies to every ordered pair (``all_pairs``: ``list_pair_loss_type``)."""
    return settings.list_pair_loss_type if name == "all_pairs" else name


def list_rewards(lists: ListLogps, settings: LossSettings) -> torch.Tensor:
    """The implicit rewards ``[G, K]`` the first loss compares, detached: ``β·r`` for the list losses, else what the
    paired loss compares (per-token means for ``ipo``, ``simpo``, ...); 0 on the padding."""
    name = paired_name(settings.loss_types[0], settings)
    if name in LIST_LOSSES:
        return (settings.beta * lists.logratios).detach()
    flat = lists.lengths.reshape(-1) if lists.lengths is not None else None
    answers = PairLogps(
        *(values.reshape(-1) for values in (lists.policy, lists.policy, lists.reference, lists.reference)),
        chosen_lengths=flat,
        rejected_lengths=flat,
    )
    rewards, _ = spec(name).rewards(answers, settings.beta)
    return torch.where(lists.valid, rewards.reshape(lists.policy.shape), 0.0).detach()


def list_losses(
    lists: ListLogps, settings: LossSettings, *, reward_mean: RewardMean | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(losses [G], rewards [G, K])``: the weighted sum of the settings' losses on each list (list losses, or
    paired ones on every ordered pair), plus RPO's NLL of the best answer per token when ``rpo_alpha``; the rewards
    are those the first loss compares (:func:`list_rewards`). ``reward_mean``: ``bco_pair``'s running δ."""
    values = {**asdict(settings), "reward_mean": reward_mean}
    pairs = None
    total = lists.policy.new_zeros(lists.policy.shape[0])
    for name, weight in zip(settings.loss_types, settings.weights):
        if name in LIST_LOSSES:
            parameters = {parameter: values[parameter] for parameter in _PARAMETERS[name]}
            total = total + weight * LIST_LOSSES[name](lists, **parameters)
            continue
        pairs = pairs or pairs_of(lists, settings)
        total = total + weight * pairwise_loss(lists, paired_name(name, settings), *pairs, values)
    if settings.rpo_alpha:  # RPO (Pang et al. 2024): the best answer's NLL per token keeps its likelihood up
        if lists.lengths is None:
            raise ValueError("rpo_alpha averages the best answer's log-probs over its tokens: pass lengths")
        lengths = lists.lengths.clamp(min=1).to(lists.policy.dtype)
        total = total - settings.rpo_alpha * masked_mean(lists.policy / lengths, lists.best())
    return total, list_rewards(lists, settings)
