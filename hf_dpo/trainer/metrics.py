"""Per-pair metrics averaged over a window (a logging interval in training, one pass in evaluation).

Each batch adds, per column, the sum of its per-pair values and the number of pairs, so a window's mean is the
exact mean over pairs however the batches were cut. Token-level metrics (TRL's ``entropy``, ``logits/*``,
``mean_token_accuracy``) are ratios of two summed columns, so they weigh every completion token equally, as TRL
does. In training each process keeps its own sums, reduced over processes when the window is read (every
process logs at the same step, so every process joins that collective); in evaluation values are gathered batch
by batch with ``gather_for_metrics``, which drops the pairs accelerate repeated to even out the last batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

#: The per-pair metrics logged in training (``rewards/accuracies``) and evaluation (``eval_rewards/accuracies``),
#: each the mean over the pairs of its window.
METRIC_NAMES = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logps/ref_margin",
    "logps/mean_logratio",
)
LOSS = "loss"  # the per-pair loss is kept beside the metrics: eval_loss is its exact mean
MEAN_LOGRATIO = "logps/mean_logratio"  # pairs: mean log π - log π_ref over both completions (not a KL estimate)
AUX_LOSS = "aux_loss"  # a mixture-of-experts router's load-balancing loss, when it is trained
# Summed per pair, read as ratios (per token) or as a total (input tokens).
TOKEN_COLUMNS = (
    "chosen_logits_sum",
    "rejected_logits_sum",
    "chosen_top1",
    "entropy_sum",
    "chosen_tokens",
    "rejected_tokens",
    "input_tokens",
)
RATIOS = {
    "logits/chosen": ("chosen_logits_sum", ("chosen_tokens",)),
    "logits/rejected": ("rejected_logits_sum", ("rejected_tokens",)),
    "mean_token_accuracy": ("chosen_top1", ("chosen_tokens",)),
    "entropy": ("entropy_sum", ("chosen_tokens", "rejected_tokens")),
}


@dataclass(frozen=True)
class MetricSpec:
    """Which summed columns a layout's step produces and how a window reads them.

    Attributes:
        means: columns averaged over the window's rows (pairs, or unpaired completions).
        ratios: ``metric -> (numerator column, denominator columns)``, read as a ratio of sums (skipped when the
            denominator is 0).
        totals: ``metric -> column`` reported as the window's sum.
        differences: ``metric -> (a, b)``, two metrics read above, reported as ``a - b``.
    """

    means: tuple[str, ...]
    ratios: dict[str, tuple[str, tuple[str, ...]]]
    totals: dict[str, str] = field(default_factory=dict)
    differences: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        ratio_columns = [
            column for numerator, denominators in self.ratios.values() for column in (numerator, *denominators)
        ]
        return tuple(dict.fromkeys((*self.means, *ratio_columns, *self.totals.values())))


PAIRED = MetricSpec(means=(*METRIC_NAMES, LOSS, AUX_LOSS), ratios=RATIOS, totals={"input_tokens": "input_tokens"})
# Lists of answers: the pair names read over each list (rewards/chosen: its best answers, rewards/rejected: the rest,
# rewards/accuracies: the share of its ordered pairs ranked right; on a pair, TRL's meaning), and how the rewards rank
# the list: its best answer first (top1), Kendall's τ_b against the scores.
LIST_METRIC_NAMES = ("rewards/top1", "rewards/kendall_tau")
LISTS = MetricSpec(
    means=(*METRIC_NAMES, *LIST_METRIC_NAMES, LOSS, AUX_LOSS), ratios=RATIOS, totals={"input_tokens": "input_tokens"}
)
# KTO: rows are single completions; reward and log-prob metrics are means over the desirable (chosen) or the
# undesirable (rejected) rows, named as TRL's KTOTrainer names them.
UNPAIRED = MetricSpec(
    # rewards/accuracies (not in TRL's KTO): the share of rows whose implied reward is on the right side of z0
    means=("kl", "rewards/accuracies", LOSS, AUX_LOSS),
    ratios={
        "rewards/chosen": ("chosen_rewards_sum", ("count/desirable",)),
        "rewards/rejected": ("rejected_rewards_sum", ("count/undesirable",)),
        "logps/chosen": ("chosen_logps_sum", ("count/desirable",)),
        "logps/rejected": ("rejected_logps_sum", ("count/undesirable",)),
        **RATIOS,
    },
    totals={
        "input_tokens": "input_tokens",
        "count/desirable": "count/desirable",
        "count/undesirable": "count/undesirable",
    },
    differences={"rewards/margins": ("rewards/chosen", "rewards/rejected")},
)


class MetricWindows:
    """Running sums per mode (``"train"``, ``"eval"``) of the per-row values a ``spec`` names."""

    def __init__(self, spec: MetricSpec = PAIRED, aux_loss: bool = False) -> None:
        self.spec, self.aux_loss = spec, aux_loss  # aux_loss: report a router's loss (only a MoE model has one)
        self._totals: dict[str, torch.Tensor] = {}  # mode -> [sum of each column..., number of rows]
        self.num_tokens = 0  # input tokens trained on so far, all processes (TRL's num_tokens)

    def add(
        self,
        mode: str,
        values: dict[str, torch.Tensor],
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Add one batch's per-row values (``{column: [B]}``); ``gather`` collects them from every process."""
        stacked = torch.stack([values[name].detach().float() for name in self.spec.columns], dim=1)  # [B, K]
        if gather is not None:
            stacked = gather(stacked)
        totals = torch.cat([stacked.sum(0), stacked.new_tensor([stacked.shape[0]])])
        window = self._totals.get(mode)
        self._totals[mode] = totals if window is None else window + totals

    def clear(self, mode: str) -> None:
        self._totals.pop(mode, None)

    def read(
        self, mode: str, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, device: torch.device = None
    ) -> dict[str, float]:
        """The window's metrics, then clear it (see :class:`MetricSpec`). ``reduce`` sums the window over
        processes (every process must call it, with or without rows of its own)."""
        columns = self.spec.columns
        totals = self._totals.pop(mode, None)
        if reduce is not None:
            totals = reduce(totals if totals is not None else torch.zeros(len(columns) + 1, device=device))
        if totals is None or totals[-1].item() == 0:
            return {}
        sums = dict(zip(columns, totals[:-1].tolist()))
        rows = totals[-1].item()
        metrics = {name: sums[name] / rows for name in self.spec.means}
        for name, (numerator, denominators) in self.spec.ratios.items():
            count = sum(sums[column] for column in denominators)
            if count:
                metrics[name] = sums[numerator] / count
        metrics.update({name: sums[column] for name, column in self.spec.totals.items()})
        for name, (first, second) in self.spec.differences.items():
            if first in metrics and second in metrics:
                metrics[name] = metrics[first] - metrics[second]
        # TRL's names: num_tokens counts the training inputs so far (evaluation reports the same count)
        input_tokens = int(metrics.pop("input_tokens", 0))
        self.num_tokens += input_tokens if mode == "train" else 0
        metrics["num_tokens"] = self.num_tokens
        if not self.aux_loss:
            metrics.pop(AUX_LOSS, None)
        return metrics


def with_train_window(logs: dict[str, float], means: dict[str, float], skipped: int | None) -> None:
    """A training log (or the run's closing summary) with the window's metrics; with ``skipped`` (the run skips
    non-finite batches), the count of skipped batches, and the loss as the mean over the pairs that trained (the
    Trainer averaged a zero in for each skipped batch)."""
    pair_loss = means.pop(LOSS, None)
    logs.update(means)
    if skipped is not None and "loss" in logs:
        logs["skipped_batches"] = skipped
        if pair_loss is None:
            del logs["loss"]  # every batch of the window was skipped: there is no loss to report
        else:
            logs["loss"] = round(pair_loss, 4)
