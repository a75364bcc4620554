"""What ``hf-dpo inspect`` shows of a row's images: how many, how many tokens the processor gave them and where
those tokens sit in the prompt; and a row's text with each run of image tokens written once, with its length (a
real image is hundreds to thousands of placeholder tokens).

    image_summary(row, prompt_ids, processor)   # "2 images: 8 image tokens in 2 runs, prompt positions 3-14 of 22"
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from hf_dpo.data.images import image_column
from hf_dpo.data.vision import image_token_span

RUN = 4  # a run of at least this many copies of one token is written once, with its count


def image_summary(row: dict[str, Any], prompt_ids: list[int], processor: Any) -> str | None:
    """One line on the row's images and their tokens, or ``None`` for a row without images."""
    name = image_column(list(row))
    value = row.get(name) if name else None
    images = (len(value) if isinstance(value, list) else 1) if value is not None else 0
    image_ids = {token for token in (*getattr(processor, "image_token_ids", ()), processor.image_token_id) if token}
    positions = [position for position, token in enumerate(prompt_ids) if token in image_ids]
    if not images and not positions:
        return None
    runs = sum(1 for is_image, _ in groupby(token in image_ids for token in prompt_ids) if is_image)
    span = image_token_span(prompt_ids, processor)
    where = f", prompt positions {span[0]}-{span[1] - 1} of {len(prompt_ids)}" if span else ""
    return (
        f"{images} image{'s' * (images != 1)}: {len(positions)} image tokens in {runs} run{'s' * (runs != 1)}{where}"
    )


def compressed(tokenizer: Any, ids: list[int]) -> str:
    """``ids`` decoded, special tokens written out, each run of ``RUN`` or more copies of one special token written
    once as ``token×count``."""
    special = set(tokenizer.all_special_ids) | {
        token for token, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items() if added.special
    }
    pieces, plain = [], []
    for token, group in groupby(ids):
        count = len(list(group))
        if token in special and count >= RUN:
            pieces += [tokenizer.decode(plain, skip_special_tokens=False), f"{tokenizer.decode([token])}×{count}"]
            plain = []
        else:
            plain += [token] * count
    return "".join([*pieces, tokenizer.decode(plain, skip_special_tokens=False)])
