"""Where each group of a shared-prompt batch sits in its row: the prompt's span and each completion's, as plain
integers on the host, so the attention function can run each span through the real kernel without a mask.

A group is ``prompt + completion_1 + ... + completion_k``, contiguous in its row. Its prompt and first completion
form one causal run (the kernel's fast path); each later completion reads its prompt's keys and its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Group:
    """One group's place: ``row``, its first position, its prompt's end, and each completion's end (exclusive;
    completion ``k`` spans ``ends[k - 1]`` (or ``prompt_end``) to ``ends[k]``)."""

    row: int
    start: int
    prompt_end: int
    ends: tuple[int, ...]

    def completions(self) -> list[tuple[int, int]]:
        """``(start, end)`` of each completion, in order."""
        starts = (self.prompt_end, *self.ends[:-1])
        return list(zip(starts, self.ends))


@dataclass(frozen=True)
class Run:
    """One attention call: queries ``start:end`` of ``row`` attend keys ``prompt_start:prompt_end`` (empty for a
    group's first run, whose queries read their own keys from the group's start) followed by ``start:end``."""

    row: int
    start: int
    end: int
    prompt_start: int
    prompt_end: int

    @property
    def prompt_length(self) -> int:
        return self.prompt_end - self.prompt_start


@dataclass(frozen=True)
class Segments:
    """Every group of a shared-prompt batch of ``rows`` rows of ``width`` positions."""

    groups: tuple[Group, ...]
    rows: int
    width: int

    @classmethod
    def from_host(cls, groups: np.ndarray, segments: np.ndarray) -> Segments:
        """From the batch's ``group_ids`` and ``segment_ids`` (``[R, L]``, on the host: the collator's columns).

        >>> Segments.from_host(np.array([[0, 0, 0, 0, 0, -1]]), np.array([[0, 0, 1, 1, 2, -1]])).groups
        (Group(row=0, start=0, prompt_end=2, ends=(4, 5)),)
        """
        rows, width = groups.shape
        found: dict[int, list] = {}  # group -> [row, start, prompt_end, ends]
        for row in range(rows):
            change = np.flatnonzero((groups[row, 1:] != groups[row, :-1]) | (segments[row, 1:] != segments[row, :-1]))
            starts = np.concatenate([[0], change + 1])
            ends = np.concatenate([change + 1, [width]])
            for start, end in zip(starts.tolist(), ends.tolist()):
                group, segment = int(groups[row, start]), int(segments[row, start])
                if group < 0:
                    continue  # padding
                entry = found.setdefault(group, [row, start, start, []])
                if segment == 0:
                    entry[2] = end
                else:
                    entry[3].append(end)
        return cls(
            tuple(
                Group(row, start, prompt_end, tuple(ends))
                for _, (row, start, prompt_end, ends) in sorted(found.items())
            ),
            rows,
            width,
        )

    def runs(self) -> list[Run]:
        """Every attention call of the layout: a group's prompt and first completion attend causally from the
        group's start; each later completion attends its prompt's keys, then its own."""
        runs = []
        for group in self.groups:
            spans = group.completions()
            first_end = spans[0][1] if spans else group.prompt_end
            runs.append(Run(group.row, group.start, first_end, group.start, group.start))
            runs += [Run(group.row, start, end, group.start, group.prompt_end) for start, end in spans[1:]]
        return runs

    def covered(self, device: torch.device) -> torch.Tensor:
        """``[R, L]`` bool: the positions some group holds (the rest is padding)."""
        mask = torch.zeros(self.rows, self.width, dtype=torch.bool)
        for group in self.groups:
            mask[group.row, group.start : (group.ends[-1] if group.ends else group.prompt_end)] = True
        return mask.to(device)
