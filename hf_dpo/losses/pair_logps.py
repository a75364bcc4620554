"""The log-probs of a batch of pairs, and what the losses read off them: log-ratios, f-divergence scores, implicit
rewards and WPO's pair weights.

:class:`PairLogps` holds the summed completion log-probs of the policy and of the reference for the chosen (``y_w``)
and the rejected (``y_l``) completion of each pair, each a float tensor of shape ``[B]``, and the completion lengths
(tokens) for the losses on per-token means. The losses themselves, and the notation (``a``, ``b``, ``h``), are in
:mod:`hf_dpo.losses.paired`, which hands on every name here.

Try it: ``python -c "import torch; from hf_dpo.losses.pair_logps import PairLogps; print(PairLogps(*torch.zeros(4, 1)).score_margin)"``
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PairLogps:
    """Log-probs of one batch of pairs; every tensor has shape ``[B]``."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None
    f_divergence: str = "reverse_kl"
    f_alpha: float = 0.5

    @property
    def chosen_logratios(self) -> torch.Tensor:
        return self.chosen - self.ref_chosen

    @property
    def rejected_logratios(self) -> torch.Tensor:
        return self.rejected - self.ref_rejected

    def scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f'(π/π_ref) of y_w, of y_l)``: the log-ratios as the f-divergence regulariser sees them (f-DPO,
        Wang et al. 2023, as TRL computes them); the log-ratios themselves for the reverse KL of plain DPO."""
        return f_divergence_score(self.chosen_logratios, self.f_divergence, self.f_alpha), f_divergence_score(
            self.rejected_logratios, self.f_divergence, self.f_alpha
        )

    @property
    def score_margin(self) -> torch.Tensor:
        """``h``, or its f-divergence form ``f'(y_w) - f'(y_l)``."""
        chosen, rejected = self.scores()
        return chosen - rejected

    def mean_score_margin(self) -> torch.Tensor:
        """The same with each score divided by its completion's token count."""
        chosen, rejected = self.scores()
        chosen_lengths, rejected_lengths = self._lengths()
        return chosen / chosen_lengths - rejected / rejected_lengths

    def _lengths(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.chosen_lengths is None or self.rejected_lengths is None:
            raise ValueError("this loss averages log-probs over tokens: pass chosen_lengths and rejected_lengths")
        return (
            self.chosen_lengths.clamp(min=1).to(self.chosen.dtype),
            self.rejected_lengths.clamp(min=1).to(self.rejected.dtype),
        )

    def length_normalised(self) -> PairLogps:
        """Every log-prob divided by its completion's token count (mean instead of sum)."""
        chosen_lengths, rejected_lengths = self._lengths()
        return replace(
            self,
            chosen=self.chosen / chosen_lengths,
            rejected=self.rejected / rejected_lengths,
            ref_chosen=self.ref_chosen / chosen_lengths,
            ref_rejected=self.ref_rejected / rejected_lengths,
        )


F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")


def f_divergence_score(logratio: torch.Tensor, divergence: str = "reverse_kl", alpha: float = 0.5) -> torch.Tensor:
    """``f'(t)`` at ``t = π/π_ref = exp(logratio)`` for the f-divergences of f-DPO (Wang et al. 2023, table 1):

    - ``reverse_kl``: ``log t`` (plain DPO);
    - ``forward_kl``: ``1 - 1/t``;
    - ``js_divergence``: ``log(2t / (t + 1)) = log 2 + log σ(log t)``;
    - ``alpha_divergence``: ``(t^(α-1) - 1) / (α - 1)``, its ``log t`` limit at ``α = 1``; the exponent is clamped
      at 80 (TRL's guard against overflow).

    >>> f_divergence_score(torch.tensor([0.0]), "forward_kl"), f_divergence_score(torch.tensor([0.0]), "js_divergence")
    (tensor([0.]), tensor([0.]))
    """
    if divergence == "reverse_kl" or (divergence == "alpha_divergence" and abs(alpha - 1.0) < 1e-6):
        return logratio
    if divergence == "forward_kl":
        return 1.0 - torch.exp(-logratio)
    if divergence == "js_divergence":
        return math.log(2.0) + F.logsigmoid(logratio)
    if divergence == "alpha_divergence":
        exponent = torch.clamp(((alpha - 1.0) * logratio).float(), max=80.0)
        return ((torch.exp(exponent) - 1.0) / (alpha - 1.0)).to(logratio.dtype)
    raise ValueError(f"f_divergence_type={divergence!r} is not one of {', '.join(F_DIVERGENCES)}")


def wpo_weights(
    chosen_aligned_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_aligned_logps: torch.Tensor,
    rejected_lengths: torch.Tensor,
) -> torch.Tensor:
    """WPO's pair weights (Zhou et al. 2024, eq. 2, with TRL's aligned probabilities): the product over the two
    completions of ``exp(mean_t [log p(y_t) - log Σ_v p(v)²])``, from sums over tokens; no gradient.

    >>> wpo_weights(torch.tensor([-2.0]), torch.tensor([2]), torch.tensor([-3.0]), torch.tensor([3]))  # e^-1·e^-1
    tensor([0.1353])
    """
    chosen = chosen_aligned_logps / chosen_lengths.clamp(min=1)
    rejected = rejected_aligned_logps / rejected_lengths.clamp(min=1)
    return torch.exp(chosen + rejected).detach()


def logratio_rewards(pair: PairLogps, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(β·a, β·b)``: DPO's implicit rewards, from summed log-probs."""
    return beta * pair.chosen_logratios, beta * pair.rejected_logratios


def mean_logratio_rewards(pair: PairLogps, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(β·ā, β·b̄)``: the log-ratios per token, for losses on length-normalised log-ratios (IPO)."""
    mean = pair.length_normalised()
    return beta * mean.chosen_logratios, beta * mean.rejected_logratios


def mean_logps_rewards(pair: PairLogps, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(β·p̄_w, β·p̄_l)``: mean log-probs per token, for reference-free losses on them (SimPO, ORPO)."""
    mean = pair.length_normalised()
    return beta * mean.chosen, beta * mean.rejected
