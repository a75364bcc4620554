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

import torch

METRIC_NAMES = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logps/ref_margin",
    "kl",
)
LOSS = "loss"  # the per-pair loss is kept beside the metrics: eval_loss is its exact mean
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
COLUMNS = (*METRIC_NAMES, LOSS, AUX_LOSS, *TOKEN_COLUMNS)


class MetricWindows:
    """Running sums per mode (``"train"``, ``"eval"``) of the per-pair values in ``COLUMNS``."""

    def __init__(self) -> None:
        self._totals: dict[str, torch.Tensor] = {}  # mode -> [sum of each column..., number of pairs]

    def add(
        self,
        mode: str,
        values: dict[str, torch.Tensor],
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Add one batch's per-pair values (``{column: [B]}``); ``gather`` collects them from every process."""
        stacked = torch.stack([values[name].detach().float() for name in COLUMNS], dim=1)  # [B, K]
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
        """The window's metrics, then clear it: means over pairs of ``METRIC_NAMES``, ``loss`` and ``aux_loss``,
        the per-token ratios of ``RATIOS``, and ``input_tokens``, the window's total. ``reduce`` sums the window
        over processes (every process must call it, with or without pairs of its own)."""
        totals = self._totals.pop(mode, None)
        if reduce is not None:
            totals = reduce(totals if totals is not None else torch.zeros(len(COLUMNS) + 1, device=device))
        if totals is None or totals[-1].item() == 0:
            return {}
        sums = dict(zip(COLUMNS, totals[:-1].tolist()))
        pairs = totals[-1].item()
        metrics = {name: sums[name] / pairs for name in (*METRIC_NAMES, LOSS, AUX_LOSS)}
        for name, (numerator, denominators) in RATIOS.items():
            tokens = sum(sums[column] for column in denominators)
            metrics[name] = sums[numerator] / tokens if tokens else 0.0
        metrics["input_tokens"] = sums["input_tokens"]
        return metrics
