"""What preparing one split did to its rows, as counts (logged, kept in ``trainer.dataset_stats`` and the card)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class PreparationStats:
    """What preparing one split did to its rows. For an unpaired run the counts are of unpaired rows (a pair
    unrolled counts as two), and ``desirable``/``undesirable`` split the kept ones (None for a paired run)."""

    split: str
    rows_in: int
    kept: int
    truncated: int
    dropped_no_room: int
    dropped_identical: int
    desirable: int | None = None
    undesirable: int | None = None
    pairs_unrolled: int | None = None  # the pairs ``rows_in`` came from, when an unpaired run was given pairs
    dropped_image_cut: int | None = None  # rows with images: truncation would have cut their image tokens

    def summary(self) -> str:
        source = f"{self.pairs_unrolled} pairs unrolled into {self.rows_in} rows; " if self.pairs_unrolled else ""
        labels = f": {self.desirable} desirable, {self.undesirable} undesirable" if self.desirable is not None else ""
        dropped = [f"{self.dropped_no_room} whose prompt leaves no room for a completion within max_length"]
        if self.desirable is None or self.pairs_unrolled:  # rows given unpaired have no twin to be identical to
            dropped.append(f"{self.dropped_identical} whose chosen and rejected completions are identical")
        if self.dropped_image_cut is not None:
            dropped.append(f"{self.dropped_image_cut} whose image tokens the length limits would cut")
        return (
            f"{self.split} set: {source}{self.kept} of {self.rows_in} rows kept ({self.truncated} of them "
            f"truncated){labels}; dropped {', '.join(dropped)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
