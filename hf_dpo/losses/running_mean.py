"""``bco_pair``'s shift δ as the running mean of every training reward (Jung et al. 2024), as an object that owns
its totals, their sum over processes and their checkpointed form.

TRL computes ``bco_pair`` with δ = 0; the running mean is the paper's and is asked for with
``bco_pair_running_mean=True`` (see :func:`hf_dpo.losses.paired.bco_pair_loss`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]


class RewardMean:
    """The mean of every reward it has been shown, over all processes: float64 ``[sum, count]`` totals.

    Args:
        reduce: sums a tensor over processes (every process then adds every process's rewards and keeps the same
            mean); ``None`` in a single process.

    >>> mean = RewardMean()
    >>> mean.shift(torch.tensor([1.0, 0.0]))  # updates, then reads: (1 + 0) / 2
    tensor(0.5000)
    >>> mean.frozen().shift(torch.tensor([9.0]))  # evaluation reads the training mean without moving it
    tensor(0.5000)
    >>> mean.state_dict()
    {'bco_rewards': [1.0, 2.0]}
    """

    KEY = "bco_rewards"  # the name in trainer_state.json, kept from earlier checkpoints

    def __init__(self, reduce: Reduce | None = None, totals: torch.Tensor | None = None, updates: bool = True):
        self.reduce, self.totals, self.updates = reduce, totals, updates

    def frozen(self) -> RewardMean:
        """A view that reads these totals and never moves them (evaluation)."""
        view = RewardMean(self.reduce, updates=False)
        view.totals = self.totals
        return view

    def shift(self, rewards: torch.Tensor) -> torch.Tensor:
        """Add ``rewards`` (detached) to the totals unless frozen, then return the mean so far; with no totals at
        all (a frozen view before any training step), the mean of ``rewards`` itself."""
        rewards = rewards.detach()
        if self.updates:
            batch = torch.stack([rewards.sum(), rewards.new_tensor(rewards.numel())]).double()
            if self.reduce is not None:
                batch = self.reduce(batch)
            self.totals = batch if self.totals is None else self.totals.to(batch) + batch
        if self.totals is None:
            return rewards.mean()
        reward_sum, count = self.totals.to(rewards.device, torch.float64)
        return (reward_sum / count).to(rewards.dtype)

    def state_dict(self) -> dict[str, list[float]]:
        """JSON-ready: float64 values as lists, which JSON keeps exactly."""
        return {} if self.totals is None else {self.KEY: self.totals.double().tolist()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        values = state.get(self.KEY)
        self.totals = None if values is None else torch.tensor(values, dtype=torch.float64)
