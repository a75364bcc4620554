"""The losses on pairs, one small pure function each, registered by name (:mod:`hf_dpo.losses.registry`).

Every loss sees a :class:`~hf_dpo.losses.pair_logps.PairLogps`: the summed completion log-probs of the policy and of
the reference for the chosen (``y_w``) and the rejected (``y_l``) completion of each pair, each ``[B]``, and the
completion lengths (tokens) for losses on length-normalised log-probs. It returns the per-pair losses ``[B]``. Its
keyword-only parameters are the settings it reads (:class:`~hf_dpo.losses.settings.LossSettings`).

Notation used in the docstrings, per pair:

- ``a = log π(y_w|x) - log π_ref(y_w|x)`` and ``b = log π(y_l|x) - log π_ref(y_l|x)`` (the log-ratios),
- ``h = a - b``, how much more than the reference the policy prefers ``y_w``,
- ``σ`` the logistic function, ``β`` the KL strength, ``ε`` ``label_smoothing``.

Each registration names the implicit rewards the loss compares (``rewards/*``): ``β·a`` and ``β·b`` for most;
``ipo`` and ``sigmoid_norm`` ``β·ā`` and ``β·b̄`` (mean log-ratios), ``simpo`` and ``orpo`` ``β·p̄_w`` and ``β·p̄_l``
(mean policy log-probs, as TRL's SimPO and ORPO report them). AOT sorts over the batch: with one pair per device it
reduces exactly to ``sigmoid``. Adding a loss is one decorated function here; the trainer never changes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hf_dpo.losses.pair_logps import PairLogps, mean_logps_rewards, mean_logratio_rewards
from hf_dpo.losses.registry import register_loss
from hf_dpo.losses.running_mean import RewardMean

# Default ε where a loss is undefined at ε = 0 (EXO's KL to a one-hot label).
EXO_DEFAULT_EPSILON = 1e-3


def _smoothed_sigmoid(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-(1-ε)·log σ(z) - ε·log σ(-z)``: binary cross-entropy of ``σ(z)`` against the soft label ``1-ε``."""
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


# ---- paired losses with a reference ----------------------------------------------------------------------------


@register_loss("sigmoid")
def sigmoid_loss(pair: PairLogps, *, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, eq. 7) with conservative label smoothing (cDPO, Mitchell 2023):
    ``-(1-ε)·log σ(βh) - ε·log σ(-βh)``; ``ε = 0`` is plain DPO."""
    return _smoothed_sigmoid(beta * pair.score_margin, label_smoothing)


@register_loss("robust")
def robust_loss(pair: PairLogps, *, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """rDPO (Chowdhury et al. 2024, eq. 8), unbiased when a fraction ε of labels is flipped:
    ``[-(1-ε)·log σ(βh) + ε·log σ(-βh)] / (1 - 2ε)``; ``ε = 0`` is plain DPO."""
    logits = beta * pair.score_margin
    eps = label_smoothing
    return (-(1.0 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1.0 - 2.0 * eps)


@register_loss("ipo", rewards=mean_logratio_rewards)
def ipo_loss(pair: PairLogps, *, beta: float) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17) on length-normalised log-probs: ``(h̄ - 1/(2β))²``, where ``h̄`` uses the
    mean log-prob per token; β plays the role of the paper's τ."""
    return (pair.mean_score_margin() - 1.0 / (2.0 * beta)) ** 2


@register_loss("hinge")
def hinge_loss(pair: PairLogps, *, beta: float) -> torch.Tensor:
    """SLiC's calibration loss (Zhao et al. 2023) on log-ratios: ``max(0, 1 - βh)``."""
    return torch.relu(1.0 - beta * pair.score_margin)


@register_loss("bco_pair")
def bco_pair_loss(pair: PairLogps, *, beta: float, reward_mean: RewardMean | None = None) -> torch.Tensor:
    """BCO on pairs (Jung et al. 2024): each reward ``r = β·a`` / ``β·b`` is classified against a shift ``δ``:
    ``-log σ(βa - δ) - log σ(-(βb - δ))``.

    As TRL, ``δ = 0`` unless a ``reward_mean`` is given (``bco_pair_running_mean=True``): then δ is the paper's
    running mean of every training reward so far, over all processes (:class:`~hf_dpo.losses.running_mean.RewardMean`,
    which this batch's rewards join first unless it is a frozen view, as in evaluation).
    """
    chosen_rewards = beta * pair.chosen_logratios
    rejected_rewards = beta * pair.rejected_logratios
    delta = 0.0
    if reward_mean is not None:
        delta = reward_mean.shift(torch.cat([chosen_rewards, rejected_rewards]))
    return -F.logsigmoid(chosen_rewards - delta) - F.logsigmoid(-(rejected_rewards - delta))


@register_loss("sppo_hard")
def sppo_hard_loss(pair: PairLogps, *, beta: float) -> torch.Tensor:
    """SPPO with hard win probabilities (Wu et al. 2024, eq. 4.5 with P(y_w ≻ π) = 1, P(y_l ≻ π) = 0):
    ``(a - 1/(2β))² + (b + 1/(2β))²``; the log-ratios are pulled to ±1/(2β) independently."""
    return (pair.chosen_logratios - 0.5 / beta) ** 2 + (pair.rejected_logratios + 0.5 / beta) ** 2


@register_loss("nca_pair")
def nca_pair_loss(pair: PairLogps, *, beta: float) -> torch.Tensor:
    """NCA on pairs (Chen et al. 2024, eq. 11): ``-log σ(βa) - ½·log σ(-βa) - ½·log σ(-βb)``: absolute rewards,
    so the chosen likelihood is not pushed down with the rejected one."""
    chosen_rewards, rejected_rewards = beta * pair.chosen_logratios, beta * pair.rejected_logratios
    return -F.logsigmoid(chosen_rewards) - 0.5 * F.logsigmoid(-chosen_rewards) - 0.5 * F.logsigmoid(-rejected_rewards)


@register_loss("exo_pair")
def exo_pair_loss(pair: PairLogps, *, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
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
def aot_pair_loss(pair: PairLogps, *, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """AOT, distributional form (Melnyk et al. 2024; TRL's ``aot_unpaired``): the chosen and the rejected
    log-ratios are each sorted over the batch and compared quantile by quantile (first-order stochastic dominance
    of the chosen rewards over the rejected ones), so pairs need not be matched:
    ``Δ = sort(a) - sort(b)``, loss ``-(1-ε)·log σ(βΔ) - ε·log σ(-βΔ)``."""
    chosen_sorted, _ = torch.sort(pair.chosen_logratios)
    rejected_sorted, _ = torch.sort(pair.rejected_logratios)
    return _smoothed_sigmoid(beta * (chosen_sorted - rejected_sorted), label_smoothing)


register_loss("aot_unpaired")(aot_pair_loss)  # TRL's name for the same loss


@register_loss("sigmoid_norm", rewards=mean_logratio_rewards)
def sigmoid_norm_loss(pair: PairLogps, *, beta: float) -> torch.Tensor:
    """DPO on length-normalised log-ratios (TRL's ``sigmoid_norm``): ``-log σ(β(ā - b̄))`` with ``ā``, ``b̄`` the
    log-ratios per completion token."""
    return -F.logsigmoid(beta * pair.mean_score_margin())


@register_loss("sft", needs_reference=False)
def sft_loss(pair: PairLogps) -> torch.Tensor:
    """The chosen completions' negative log-likelihood per token, as a loss type to combine with others (MPO:
    ``loss_type=["sigmoid", "bco_pair", "sft"]``). As TRL, the mean is over every chosen token of the batch
    (``-Σ log π(y_w) / Σ |y_w|``), the same value for each pair; with ``ld_alpha`` the sums here carry its weights,
    where TRL's ``sft`` uses unweighted tokens."""
    if pair.chosen_lengths is None:
        raise ValueError("loss_type 'sft' averages over tokens: pass chosen_lengths")
    batch_nll = -pair.chosen.sum() / pair.chosen_lengths.sum().clamp(min=1)
    return batch_nll.expand(pair.chosen.shape[0])


@register_loss("aot")
def aot_loss(pair: PairLogps, *, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """AOT, paired form (Melnyk et al. 2024): the per-pair policy margins ``log π(y_w) - log π(y_l)`` and the
    reference margins are each sorted over the batch and compared quantile by quantile: ``Δ = sort(π_w - π_l) - sort(ref_w - ref_l)``,
    loss ``-(1-ε)·log σ(βΔ) - ε·log σ(-βΔ)``."""
    policy_sorted, _ = torch.sort(pair.chosen - pair.rejected)
    reference_sorted, _ = torch.sort(pair.ref_chosen - pair.ref_rejected)
    return _smoothed_sigmoid(beta * (policy_sorted - reference_sorted), label_smoothing)


@register_loss("apo_zero")
def apo_zero_loss(pair: PairLogps, *, beta: float) -> torch.Tensor:
    """APO-zero (D'Oosterlinck et al. 2024): for when ``y_w`` is better than the model's own outputs: raise the
    chosen likelihood and lower the rejected one, each on its own: ``(1 - σ(βa)) + σ(βb)``."""
    return (1.0 - torch.sigmoid(beta * pair.chosen_logratios)) + torch.sigmoid(beta * pair.rejected_logratios)


@register_loss("apo_down")
def apo_down_loss(pair: PairLogps, *, beta: float) -> torch.Tensor:
    """APO-down (D'Oosterlinck et al. 2024): for when the model is better than ``y_w``: lower the chosen likelihood
    while keeping the preference margin: ``σ(βa) + (1 - σ(β(a - b)))``."""
    chosen_logratios, rejected_logratios = pair.chosen_logratios, pair.rejected_logratios
    return torch.sigmoid(beta * chosen_logratios) + (
        1.0 - torch.sigmoid(beta * (chosen_logratios - rejected_logratios))
    )


@register_loss("discopop")
def discopop_loss(pair: PairLogps, *, beta: float, discopop_tau: float = 0.05) -> torch.Tensor:
    """DiscoPOP, the log-ratio-modulated loss (Chris Lu et al. 2024, eq. 5): with ``z = βh`` and
    ``m = σ(z/τ)``, ``(1 - m)·(-log σ(z)) + m·exp(-z)``: logistic for negative margins, exponential for positive."""
    logits = beta * pair.score_margin
    modulation = torch.sigmoid(logits / discopop_tau)
    return (1.0 - modulation) * -F.logsigmoid(logits) + modulation * torch.exp(-logits)


# ---- reference-free losses -------------------------------------------------------------------------------------


@register_loss("simpo", needs_reference=False, rewards=mean_logps_rewards)
def simpo_loss(
    pair: PairLogps, *, beta: float, simpo_gamma: float = 0.5, label_smoothing: float = 0.0
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
def orpo_loss(pair: PairLogps, *, orpo_lambda: float = 0.1) -> torch.Tensor:
    """ORPO (Hong et al. 2024, eqs. 6-7), no reference: the chosen NLL per token plus λ times the odds-ratio loss
    ``-log σ(log odds(y_w) - log odds(y_l))``, with ``odds(y) = p̄/(1-p̄)`` and ``p̄ = exp(mean log-prob)``.
    β is not used (ORPO's weight is λ)."""
    mean = pair.length_normalised()
    odds_ratio_loss = -F.logsigmoid(_log_odds(mean.chosen) - _log_odds(mean.rejected))
    return -mean.chosen + orpo_lambda * odds_ratio_loss
