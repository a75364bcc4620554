"""Per-pair metrics averaged over a window (a logging interval in training, one pass in evaluation).

Each batch adds, per metric, the sum of its per-pair values and the number of pairs, so a window's mean is the
exact mean over pairs however the batches were cut. In training each process keeps its own sums, reduced over
processes when the window is read (every process logs at the same step, so every process joins that
collective); in evaluation values are gathered batch by batch with ``gather_for_metrics``, which drops the
pairs accelerate repeated to even out the last batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


class MetricWindows:
    """Running sums per mode (``"train"``, ``"eval"``) of the per-pair values named ``names``."""

    def __init__(self, names: Sequence[str] = (*METRIC_NAMES, LOSS)):
        self.names = tuple(names)
        self._totals: dict[str, torch.Tensor] = {}  # mode -> [sum of each value..., number of pairs]

    def add(
        self,
        mode: str,
        values: dict[str, torch.Tensor],
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Add one batch's per-pair values (``{name: [B]}``); ``gather`` collects them from every process first."""
        stacked = torch.stack([values[name].detach().float() for name in self.names], dim=1)  # [B, K]
        if gather is not None:
            stacked = gather(stacked)
        totals = torch.cat([stacked.sum(0), stacked.new_tensor([stacked.shape[0]])])
        window = self._totals.get(mode)
        self._totals[mode] = totals if window is None else window + totals

    def clear(self, mode: str) -> None:
        self._totals.pop(mode, None)

    def means(
        self, mode: str, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, device: torch.device = None
    ) -> dict[str, float]:
        """Means over every pair since the window was last read, then clear it; ``reduce`` sums the window over
        processes (every process must call it, with or without pairs of its own)."""
        totals = self._totals.pop(mode, None)
        if reduce is not None:
            totals = reduce(totals if totals is not None else torch.zeros(len(self.names) + 1, device=device))
        if totals is None or totals[-1].item() == 0:
            return {}
        return dict(zip(self.names, (totals[:-1] / totals[-1]).tolist()))
