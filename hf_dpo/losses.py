"""Preference losses as small pure functions of per-sequence log-probabilities, in a registry.

Every loss sees a :class:`PairLogps`: the summed completion log-probs of the policy and of the reference for the
chosen (``y_w``) and the rejected (``y_l``) completion of each pair, each a float tensor of shape ``[B]``, and the
completion lengths (tokens) for losses on length-normalised log-probs. It returns the per-pair losses ``[B]``.
``PairLogps``, the f-divergence scores, the implicit rewards and WPO's pair weights are in :mod:`hf_dpo.pair_logps`,
and importable from here too.

Notation used in the docstrings, per pair:

- ``a = log π(y_w|x) - log π_ref(y_w|x)`` and ``b = log π(y_l|x) - log π_ref(y_l|x)`` (the log-ratios),
- ``h = a - b``, how much more than the reference the policy prefers ``y_w``,
- ``σ`` the logistic function, ``β`` the KL strength, ``ε`` ``label_smoothing``.

:func:`dpo_loss` looks ``loss_type`` up in the registry (several types with weights are summed, MPO style), adds
the optional RPO term, and returns ``(losses, chosen_rewards, rejected_rewards)``: the implicit rewards the loss
itself compares, detached, so ``rewards/accuracies`` measures what is optimised. For most losses these are ``β·a``
and ``β·b``; losses on per-token means report per-token means: ``ipo`` ``β·ā`` and ``β·b̄`` (mean log-ratios),
``simpo`` and ``orpo`` ``β·p̄_w`` and ``β·p̄_l`` (mean policy log-probs, as TRL's SimPO and ORPO report them). With
several loss types, the first one's rewards are reported. Adding a loss is one decorated function here; the
trainer never changes.

AOT sorts over the batch: with one pair per device it reduces exactly to ``sigmoid``. The unpaired losses (KTO) are
in :mod:`hf_dpo.losses_unpaired`; their names are in ``LOSS_TYPES`` and their functions importable from here too.

Try it: ``python -c "import torch; from hf_dpo.losses import dpo_loss; print(dpo_loss(*torch.zeros(4, 1)))"``
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hf_dpo.columns import UNPAIRED_LOSS_TYPES
from hf_dpo.losses_unpaired import kto_kl_estimate as kto_kl_estimate  # handed on: the step and tests import it here
from hf_dpo.losses_unpaired import kto_loss as kto_loss

# handed on: the log-probs' dataclass and what is read off them live in pair_logps.py; callers import them here
from hf_dpo.pair_logps import F_DIVERGENCES as F_DIVERGENCES
from hf_dpo.pair_logps import PairLogps as PairLogps
from hf_dpo.pair_logps import f_divergence_score as f_divergence_score
from hf_dpo.pair_logps import logratio_rewards as logratio_rewards
from hf_dpo.pair_logps import mean_logps_rewards as mean_logps_rewards
from hf_dpo.pair_logps import mean_logratio_rewards as mean_logratio_rewards
from hf_dpo.pair_logps import wpo_weights as wpo_weights

# Default ε where a loss is undefined at ε = 0 (EXO's KL to a one-hot label).
EXO_DEFAULT_EPSILON = 1e-3

LossFn = Callable[..., torch.Tensor]
RewardsFn = Callable[[PairLogps, float], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LossSpec:
    fn: LossFn
    needs_reference: bool
    rewards: RewardsFn = logratio_rewards


_REGISTRY: dict[str, LossSpec] = {}


def register_loss(
    name: str, needs_reference: bool = True, rewards: RewardsFn = logratio_rewards
) -> Callable[[LossFn], LossFn]:
    """Register ``fn(pair: PairLogps, beta: float, **hyper_parameters) -> losses [B]`` under ``name``; ``rewards``
    gives the implicit rewards the loss compares (reported as ``rewards/*``)."""

    def decorator(fn: LossFn) -> LossFn:
        if name in _REGISTRY:
            raise ValueError(f"loss_type {name!r} is already registered")
        _REGISTRY[name] = LossSpec(fn, needs_reference, rewards)
        return fn

    return decorator


def _smoothed_sigmoid(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-(1-ε)·log σ(z) - ε·log σ(-z)``: binary cross-entropy of ``σ(z)`` against the soft label ``1-ε``."""
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


# ---- paired losses with a reference ----------------------------------------------------------------------------


@register_loss("sigmoid")
def sigmoid_loss(pair: PairLogps, beta: float, label_smoothing: float = 0.0, **_: Any) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, eq. 7) with conservative label smoothing (cDPO, Mitchell 2023):
    ``-(1-ε)·log σ(βh) - ε·log σ(-βh)``; ``ε = 0`` is plain DPO."""
    return _smoothed_sigmoid(beta * pair.score_margin, label_smoothing)


@register_loss("robust")
def robust_loss(pair: PairLogps, beta: float, label_smoothing: float = 0.0, **_: Any) -> torch.Tensor:
    """rDPO (Chowdhury et al. 2024, eq. 8), unbiased when a fraction ε of labels is flipped:
    ``[-(1-ε)·log σ(βh) + ε·log σ(-βh)] / (1 - 2ε)``; ``ε = 0`` is plain DPO."""
    logits = beta * pair.score_margin
    eps = label_smoothing
    return (-(1.0 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1.0 - 2.0 * eps)


@register_loss("ipo", rewards=mean_logratio_rewards)
def ipo_loss(pair: PairLogps, beta: float, **_: Any) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17) on length-normalised log-probs: ``(h̄ - 1/(2β))²``, where ``h̄`` uses the
    mean log-prob per token; β plays the role of the paper's τ."""
    return (pair.mean_score_margin() - 1.0 / (2.0 * beta)) ** 2


@register_loss("hinge")
def hinge_loss(pair: PairLogps, beta: float, **_: Any) -> torch.Tensor:
    """SLiC's calibration loss (Zhao et al. 2023) on log-ratios: ``max(0, 1 - βh)``."""
    return torch.relu(1.0 - beta * pair.score_margin)


@register_loss("bco_pair")
def bco_pair_loss(
    pair: PairLogps,
    beta: float,
    state: dict[str, Any] | None = None,
    update_state: bool = True,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **_: Any,
) -> torch.Tensor:
    """BCO on pairs (Jung et al. 2024): each reward ``r = β·a`` / ``β·b`` is classified against a shift ``δ``,
    the running mean of all rewards seen so far: ``-log σ(βa - δ) - log σ(-(βb - δ))``.

    ``state`` (a dict the trainer keeps between steps and in checkpoints) holds ``bco_rewards``, the float64
    ``[sum, count]`` of training rewards; ``all_reduce`` sums a tensor over processes, so every process adds every
    process's rewards and keeps the same δ. ``update_state=False`` (evaluation) uses δ without moving it. Without
    any state, ``δ`` is this batch's mean.
    """
    chosen_rewards = beta * pair.chosen_logratios
    rejected_rewards = beta * pair.rejected_logratios
    rewards = torch.cat([chosen_rewards, rejected_rewards]).detach()
    if state is not None and update_state:
        totals = torch.stack([rewards.sum(), rewards.new_tensor(rewards.numel())]).double()
        if all_reduce is not None:
            totals = all_reduce(totals)
        previous = state.get("bco_rewards")
        state["bco_rewards"] = totals if previous is None else torch.as_tensor(previous).to(totals) + totals
    if state and state.get("bco_rewards") is not None:
        reward_sum, count = torch.as_tensor(state["bco_rewards"]).to(rewards.device, torch.float64)
        delta = (reward_sum / count).to(rewards.dtype)
    else:
        delta = rewards.mean()
    return -F.logsigmoid(chosen_rewards - delta) - F.logsigmoid(-(rejected_rewards - delta))


@register_loss("sppo_hard")
def sppo_hard_loss(pair: PairLogps, beta: float, **_: Any) -> torch.Tensor:
    """SPPO with hard win probabilities (Wu et al. 2024, eq. 4.5 with P(y_w ≻ π) = 1, P(y_l ≻ π) = 0):
    ``(a - 1/(2β))² + (b + 1/(2β))²``; the log-ratios are pulled to ±1/(2β) independently."""
    return (pair.chosen_logratios - 0.5 / beta) ** 2 + (pair.rejected_logratios + 0.5 / beta) ** 2


@register_loss("nca_pair")
def nca_pair_loss(pair: PairLogps, beta: float, **_: Any) -> torch.Tensor:
    """NCA on pairs (Chen et al. 2024, eq. 11): ``-log σ(βa) - ½·log σ(-βa) - ½·log σ(-βb)``: absolute rewards,
    so the chosen likelihood is not pushed down with the rejected one."""
    chosen_rewards, rejected_rewards = beta * pair.chosen_logratios, beta * pair.rejected_logratios
    return -F.logsigmoid(chosen_rewards) - 0.5 * F.logsigmoid(-chosen_rewards) - 0.5 * F.logsigmoid(-rejected_rewards)


@register_loss("exo_pair")
def exo_pair_loss(pair: PairLogps, beta: float, label_smoothing: float = 0.0, **_: Any) -> torch.Tensor:
    """EXO on pairs (Ji et al. 2024, eq. 12): the reverse KL from the policy's preference ``σ(βh)`` to the label
    distribution ``(1-ε, ε)``: ``σ(βh)·(log σ(βh) - log(1-ε)) + σ(-βh)·(log σ(-βh) - log ε)``.
    ``ε = 0`` is undefined, so ``label_smoothing = 0`` means ε = 1e-3."""
    eps = label_smoothing if label_smoothing > 0 else EXO_DEFAULT_EPSILON
    logits = beta * pair.score_margin
    prefer_chosen, prefer_rejected = torch.sigmoid(logits), torch.sigmoid(-logits)
    return prefer_chosen * (F.logsigmoid(logits) - math.log1p(-eps)) + prefer_rejected * (
        F.logsigmoid(-logits) - math.log(eps)
    )


@register_loss("aot_pair")
def aot_pair_loss(pair: PairLogps, beta: float, label_smoothing: float = 0.0, **_: Any) -> torch.Tensor:
    """AOT, distributional form (Melnyk et al. 2024; TRL's ``aot_unpaired``): the chosen and the rejected
    log-ratios are each sorted over the batch and compared quantile by quantile (first-order stochastic dominance
    of the chosen rewards over the rejected ones), so pairs need not be matched:
    ``Δ = sort(a) - sort(b)``, loss ``-(1-ε)·log σ(βΔ) - ε·log σ(-βΔ)``."""
    chosen_sorted, _ = torch.sort(pair.chosen_logratios)
    rejected_sorted, _ = torch.sort(pair.rejected_logratios)
    return _smoothed_sigmoid(beta * (chosen_sorted - rejected_sorted), label_smoothing)


register_loss("aot_unpaired")(aot_pair_loss)  # TRL's name for the same loss


@register_loss("sigmoid_norm", rewards=mean_logratio_rewards)
def sigmoid_norm_loss(pair: PairLogps, beta: float, **_: Any) -> torch.Tensor:
    """DPO on length-normalised log-ratios (TRL's ``sigmoid_norm``): ``-log σ(β(ā - b̄))`` with ``ā``, ``b̄`` the
    log-ratios per completion token."""
    return -F.logsigmoid(beta * pair.mean_score_margin())


@register_loss("sft", needs_reference=False)
def sft_loss(pair: PairLogps, beta: float, **_: Any) -> torch.Tensor:
    """The chosen completions' negative log-likelihood per token, as a loss type to combine with others (MPO:
    ``loss_type=["sigmoid", "bco_pair", "sft"]``). As TRL, the mean is over every chosen token of the batch
    (``-Σ log π(y_w) / Σ |y_w|``), the same value for each pair; with ``ld_alpha`` the sums here carry its weights,
    where TRL's ``sft`` uses unweighted tokens."""
    if pair.chosen_lengths is None:
        raise ValueError("loss_type 'sft' averages over tokens: pass chosen_lengths")
    batch_nll = -pair.chosen.sum() / pair.chosen_lengths.sum().clamp(min=1)
    return batch_nll.expand(pair.chosen.shape[0])


@register_loss("aot")
def aot_loss(pair: PairLogps, beta: float, label_smoothing: float = 0.0, **_: Any) -> torch.Tensor:
    """AOT, paired form (Melnyk et al. 2024): the per-pair policy margins ``log π(y_w) - log π(y_l)`` and the
    reference margins are each sorted over the batch and compared quantile by quantile: ``Δ = sort(π_w - π_l) - sort(ref_w - ref_l)``,
    loss ``-(1-ε)·log σ(βΔ) - ε·log σ(-βΔ)``."""
    policy_sorted, _ = torch.sort(pair.chosen - pair.rejected)
    reference_sorted, _ = torch.sort(pair.ref_chosen - pair.ref_rejected)
    return _smoothed_sigmoid(beta * (policy_sorted - reference_sorted), label_smoothing)


@register_loss("apo_zero")
def apo_zero_loss(pair: PairLogps, beta: float, **_: Any) -> torch.Tensor:
    """APO-zero (D'Oosterlinck et al. 2024): for when ``y_w`` is better than the model's own outputs: raise the
    chosen likelihood and lower the rejected one, each on its own: ``(1 - σ(βa)) + σ(βb)``."""
    return (1.0 - torch.sigmoid(beta * pair.chosen_logratios)) + torch.sigmoid(beta * pair.rejected_logratios)


@register_loss("apo_down")
def apo_down_loss(pair: PairLogps, beta: float, **_: Any) -> torch.Tensor:
    """APO-down (D'Oosterlinck et al. 2024): for when the model is better than ``y_w``: lower the chosen likelihood
    while keeping the preference margin: ``σ(βa) + (1 - σ(β(a - b)))``."""
    chosen_logratios, rejected_logratios = pair.chosen_logratios, pair.rejected_logratios
    return torch.sigmoid(beta * chosen_logratios) + (
        1.0 - torch.sigmoid(beta * (chosen_logratios - rejected_logratios))
    )


@register_loss("discopop")
def discopop_loss(pair: PairLogps, beta: float, discopop_tau: float = 0.05, **_: Any) -> torch.Tensor:
    """DiscoPOP, the log-ratio-modulated loss (Chris Lu et al. 2024, eq. 5): with ``z = βh`` and
    ``m = σ(z/τ)``, ``(1 - m)·(-log σ(z)) + m·exp(-z)``: logistic for negative margins, exponential for positive."""
    logits = beta * pair.score_margin
    modulation = torch.sigmoid(logits / discopop_tau)
    return (1.0 - modulation) * -F.logsigmoid(logits) + modulation * torch.exp(-logits)


# ---- reference-free losses -------------------------------------------------------------------------------------


@register_loss("simpo", needs_reference=False, rewards=mean_logps_rewards)
def simpo_loss(
    pair: PairLogps, beta: float, simpo_gamma: float = 0.5, label_smoothing: float = 0.0, **_: Any
) -> torch.Tensor:
    """SimPO (Meng et al. 2024, eq. 6), no reference: mean log-probs per token and a target margin γ:
    ``-(1-ε)·log σ(β(p̄_w - p̄_l) - γ) - ε·log σ(-(β(p̄_w - p̄_l) - γ))``."""
    mean = pair.length_normalised()
    return _smoothed_sigmoid(beta * (mean.chosen - mean.rejected) - simpo_gamma, label_smoothing)


def _log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 - p))`` of the per-token mean probability ``p = exp(mean_logps)``, stable as ``p -> 1``."""
    mean_logps = mean_logps.clamp(max=-1e-6)  # p < 1
    return mean_logps - torch.log(-torch.expm1(mean_logps))


@register_loss("orpo", needs_reference=False, rewards=mean_logps_rewards)
def orpo_loss(pair: PairLogps, beta: float, orpo_lambda: float = 0.1, **_: Any) -> torch.Tensor:
    """ORPO (Hong et al. 2024, eqs. 6-7), no reference: the chosen NLL per token plus λ times the odds-ratio loss
    ``-log σ(log odds(y_w) - log odds(y_l))``, with ``odds(y) = p̄/(1-p̄)`` and ``p̄ = exp(mean log-prob)``.
    β is not used (ORPO's weight is λ)."""
    mean = pair.length_normalised()
    odds_ratio_loss = -F.logsigmoid(_log_odds(mean.chosen) - _log_odds(mean.rejected))
    return -mean.chosen + orpo_lambda * odds_ratio_loss


# ---- the entry point -------------------------------------------------------------------------------------------

PAIRED_LOSS_TYPES: tuple[str, ...] = tuple(_REGISTRY)  # the built-in losses on pairs
LOSS_TYPES: tuple[str, ...] = (*PAIRED_LOSS_TYPES, *UNPAIRED_LOSS_TYPES)  # every accepted loss_type


def registered_loss_types() -> tuple[str, ...]:
    """Every accepted loss: the registered paired ones (including any registered with :func:`register_loss` after
    import) and the unpaired ones."""
    return (*_REGISTRY, *UNPAIRED_LOSS_TYPES)


def as_loss_types(loss_type: str | Sequence[str]) -> list[str]:
    """``"sigmoid"``, ``"sigmoid,bco_pair"`` or ``["sigmoid", "bco_pair"]`` -> a list of names."""
    names = loss_type.split(",") if isinstance(loss_type, str) else list(loss_type)
    return [name.strip() for name in names]


def needs_reference(loss_type: str | Sequence[str]) -> bool:
    """Whether any of the losses uses reference log-probs (otherwise no reference is built or run)."""
    names = as_loss_types(loss_type)
    unpaired = any(name in UNPAIRED_LOSS_TYPES for name in names)  # both compare with a reference
    return unpaired or any(_REGISTRY[name].needs_reference for name in names if name in _REGISTRY)


# Losses built on the chosen-rejected score difference: the only ones a non-default f-divergence applies to (TRL).
F_DIVERGENCE_LOSS_TYPES = ("sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft")


def check_f_divergence(divergence: str, loss_types: Sequence[str]) -> None:
    """A non-default f-divergence only for the losses built on the chosen-rejected score difference (as TRL)."""
    if divergence not in F_DIVERGENCES:
        raise ValueError(f"f_divergence_type={divergence!r} is not one of {', '.join(F_DIVERGENCES)}")
    others = [name for name in loss_types if name not in F_DIVERGENCE_LOSS_TYPES]
    if divergence != "reverse_kl" and others:
        raise ValueError(
            f"f_divergence_type={divergence!r} applies only to loss types {', '.join(F_DIVERGENCE_LOSS_TYPES)}; "
            f"{others} use the log-ratios themselves: use f_divergence_type='reverse_kl' with them"
        )


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str | Sequence[str] = "sigmoid",
    label_smoothing: float = 0.0,
    **loss_kwargs: Any,
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
        loss_kwargs: `chosen_lengths`, `rejected_lengths` (`[B]` token counts, for length-normalised losses);
            `loss_weights` (one float per loss type, default 1.0 each); `f_divergence_type` and
            `f_alpha_divergence_coef` (f-DPO; see :func:`f_divergence_score`); `pair_weights` (`[B]`, multiplies each
            pair's loss: WPO, see :func:`wpo_weights`); `rpo_alpha` (adds `rpo_alpha` times the
            chosen completion's per-token NLL, RPO); `state` (a dict kept across steps, for `bco_pair`) and
            `all_reduce` (sums a tensor over processes, for that state); and the
            hyper-parameters of single losses (`simpo_gamma`, `orpo_lambda`, `discopop_tau`).

    Returns:
        `(losses, chosen_rewards, rejected_rewards)`, each of shape `[B]`; the rewards are the implicit rewards
        the (first) loss compares, detached: `beta * (policy - ref)` unless the loss works on per-token means
        (see the module docstring).
    """
    names = as_loss_types(loss_type)
    unknown = [name for name in names if name not in _REGISTRY]
    if unknown:
        raise ValueError(f"loss_type={unknown[0]!r} is not one of {', '.join(registered_loss_types())}")
    weights = loss_kwargs.pop("loss_weights", None) or [1.0] * len(names)
    if len(weights) != len(names):
        raise ValueError(f"loss_weights={list(weights)} must give one weight per loss type in {names}")
    rpo_alpha = loss_kwargs.pop("rpo_alpha", None)
    pair_weights = loss_kwargs.pop("pair_weights", None)
    divergence = loss_kwargs.pop("f_divergence_type", None) or "reverse_kl"
    check_f_divergence(divergence, names)
    pair = PairLogps(
        chosen=policy_chosen_logps,
        rejected=policy_rejected_logps,
        ref_chosen=ref_chosen_logps,
        ref_rejected=ref_rejected_logps,
        chosen_lengths=loss_kwargs.pop("chosen_lengths", None),
        rejected_lengths=loss_kwargs.pop("rejected_lengths", None),
        f_divergence=divergence,
        f_alpha=loss_kwargs.pop("f_alpha_divergence_coef", 0.5),
    )
    losses = sum(
        weight * _REGISTRY[name].fn(pair, beta=beta, label_smoothing=label_smoothing, **loss_kwargs)
        for name, weight in zip(names, weights)
    )
    if pair_weights is not None:  # WPO: every loss term of a pair weighted by its (no-grad) probability
        losses = losses * pair_weights
    if rpo_alpha:
        # RPO (Pang et al. 2024): NLL of the chosen completion, per token, keeps its likelihood from falling.
        losses = losses - rpo_alpha * pair.length_normalised().chosen
    chosen_rewards, rejected_rewards = _REGISTRY[names[0]].rewards(pair, beta)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()
