"""Words and text pictures ``hf-dpo inspect`` prints for pairs and for lists alike: each row status's words, and
a text histogram."""

from __future__ import annotations

from collections import Counter

from hf_dpo.data.tokenization import KEPT, TRUNCATED
from hf_dpo.data.vision import DROPPED_IMAGE_CUT

OPEN, CLOSE = "⟦", "⟧"  # around the tokens a row trains on
STATUS_WORDS = {KEPT: "kept", TRUNCATED: "truncated", 2: "dropped: no room for a completion", 3: "dropped: identical"}
STATUS_WORDS[DROPPED_IMAGE_CUT] = "dropped: the limits would cut its image tokens"


def histogram(values: list[int], bins: int = 8, width: int = 32) -> list[str]:
    """A text histogram: one line per bin, ``low-high │bar count``.

    >>> print("\\n".join(histogram([1, 2, 2, 3, 8], bins=2, width=6)))
      1-4 │██████ 4
      5-8 │█▌ 1
    """
    if not values:
        return ["  (no rows)"]
    low, high = min(values), max(values)
    step = max(1, -(-(high - low + 1) // bins))
    counts = Counter((value - low) // step for value in values)
    most = max(counts.values())
    buckets = range(-(-(high - low + 1) // step))
    labels = [
        f"{low + bucket * step}" + (f"-{low + (bucket + 1) * step - 1}" if step > 1 else "") for bucket in buckets
    ]
    lines = []
    for bucket, label in zip(buckets, labels):
        count = counts.get(bucket, 0)
        eighths = round(8 * width * count / most)
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        lines.append(f"  {label:>{max(map(len, labels))}} │{bar} {count}")
    return lines
