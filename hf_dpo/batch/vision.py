"""Images into a step's batch: each pair's images processed once, in the collator, and laid out per model row later.

:class:`VisionCollator` wraps the text layout's collator (padded rows or the shared prompt): the token ids come from
it, and each pair's images go through the processor once (TRL's collator processes every image twice, for the
chosen and the rejected copy). The result, :class:`ImageInputs`, holds every pair's image inputs as the processor
made them, pair after pair; :meth:`ImageInputs.for_rows` lays them out for whatever rows the model reads: the
padded layout repeats each pair's inputs for its chosen and its rejected row (as TRL does), the shared prompt gives
each group's row its pair's inputs once, a row holding several groups (``padding_free``) all of theirs, in order.

The processor decides the shapes. Some inputs are per image (Qwen's ``pixel_values`` ``[patches, D]`` and
``image_grid_thw`` ``[images, 3]``, LLaVA's and Gemma 3's ``pixel_values`` ``[images, C, H, W]``): a row's entries
follow each other along dim 0, in the order the row's image tokens come. Others are per row (Idefics3's and
SmolVLM's ``pixel_values`` ``[rows, images, C, H, W]`` and ``pixel_attention_mask``): a row holds its images along
dim 1, zero-padded to the row with most. Which is which is asked of the processor once, with two rows of two and one
image: a per-row input comes back with 2 entries along dim 0, a per-image one with 3 or more.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from hf_dpo.data.images import row_images

IMAGE_INPUTS = "image_inputs"  # the batch column holding an ImageInputs
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")  # the layout's, not the images'


@dataclass(frozen=True)
class ImageInputs:
    """Every pair's image inputs, pair after pair.

    Attributes:
        values: input name -> tensor, each pair's entries along dim 0 (a per-row input without its row dim:
            ``[images, ...]``).
        counts: input name -> each pair's number of entries along dim 0 (on the host).
        per_row: the names whose model input is ``[rows, images, ...]``.
    """

    values: dict[str, torch.Tensor]
    counts: dict[str, tuple[int, ...]]
    per_row: tuple[str, ...] = ()

    @property
    def num_pairs(self) -> int:
        return len(next(iter(self.counts.values())))

    @property
    def images(self) -> int:
        """How many image entries the batch holds (what one vision-tower pass over it encodes)."""
        name = next((name for name in self.per_row), None) or next(iter(self.values))
        return sum(self.counts[name])

    def to(self, device: Any, non_blocking: bool = False) -> ImageInputs:
        """On ``device`` (accelerate's ``send_to_device`` calls this for the dataloader)."""
        values = {name: value.to(device, non_blocking=non_blocking) for name, value in self.values.items()}
        return ImageInputs(values, self.counts, self.per_row)

    def for_rows(self, pairs: list[list[int]]) -> dict[str, torch.Tensor]:
        """The model's image inputs for rows where row ``r`` holds the pairs ``pairs[r]``, in order.

        >>> inputs = ImageInputs({"grid": torch.tensor([[1, 2, 2], [1, 4, 4], [1, 2, 2]])}, {"grid": (2, 1)})
        >>> inputs.for_rows([[0], [1], [0], [1]])["grid"].tolist()  # padded rows: chosen, then rejected
        [[1, 2, 2], [1, 4, 4], [1, 2, 2], [1, 2, 2], [1, 4, 4], [1, 2, 2]]
        """
        laid_out = {}
        for name, value in self.values.items():
            starts = [0, *torch.tensor(self.counts[name]).cumsum(0).tolist()]
            slices = [[value[starts[pair] : starts[pair + 1]] for pair in row] for row in pairs]
            if name not in self.per_row:
                laid_out[name] = torch.cat([piece for row in slices for piece in row])
                continue
            rows = [torch.cat(row) if row else value[:0] for row in slices]
            most = max(len(row) for row in rows)
            padded = value.new_zeros(len(rows), most, *value.shape[1:])
            for index, row in enumerate(rows):
                padded[index, : len(row)] = row
            laid_out[name] = padded
        return laid_out


def _processed(processor: Any, images: list[Any]) -> dict[str, torch.Tensor]:
    output = processor(
        images=images, return_tensors="pt", padding=True
    )  # padding: a processor that writes text for images-only calls (Gemma 3)
    return {name: value for name, value in output.items() if name not in TEXT_KEYS and torch.is_tensor(value)}


def per_row_inputs(processor: Any) -> tuple[str, ...]:
    """The processor's image inputs that are per row (see the module docstring): asked with rows of 2 and 1 images."""
    from PIL import Image

    probe = Image.new("RGB", (28, 28), (128, 128, 128))
    output = _processed(processor, [[probe, probe], [probe]])
    return tuple(sorted(name for name, value in output.items() if value.dim() > 0 and value.shape[0] == 2))


def image_inputs(processor: Any, pairs: list[list[Any]], per_row: tuple[str, ...]) -> ImageInputs | None:
    """Each pair's images (``pairs[i]``: a list of PIL images, maybe empty) through ``processor`` once; ``None``
    when no pair has an image."""
    outputs = [_processed(processor, [images]) if images else None for images in pairs]
    names = sorted({name for output in outputs if output for name in output})
    if not names:
        return None
    values, counts = {}, {}
    for name in names:
        per_pair = []
        for index, output in enumerate(outputs):
            if output is not None and name not in output:
                raise ValueError(f"the processor gave {name!r} for some pairs' images and not for pair {index}'s")
            # a per-row input of one pair is [1, images, ...]: its images, without the row
            per_pair.append(None if output is None else output[name][0] if name in per_row else output[name])
        values[name] = torch.cat([piece for piece in per_pair if piece is not None])
        counts[name] = tuple(0 if piece is None else len(piece) for piece in per_pair)
    return ImageInputs(values, counts, tuple(name for name in per_row if name in values))


@dataclass
class VisionCollator:
    """A text layout's collator with each pair's images processed once by ``processor`` (see the module docstring).

    Rows are the prepared rows (token ids, and the row's ``images`` list or ``image``); the batch is the layout's,
    plus :data:`IMAGE_INPUTS` (an :class:`ImageInputs`) when some row has an image.

    Args:
        layout: the collator of the text layout (``DPODataCollator``, ``SharedPromptCollator``).
        processor: the model's processor (its image processor reads the images).
    """

    layout: Any
    processor: Any
    _per_row: tuple[str, ...] | None = field(default=None, init=False, repr=False)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.layout(rows)
        if self._per_row is None:
            self._per_row = per_row_inputs(self.processor)
        pairs = [row_images(row, index) for index, row in enumerate(rows)]
        inputs = image_inputs(self.processor, pairs, self._per_row)
        if inputs is not None:  # a batch of text-only rows holds no image inputs at all
            batch[IMAGE_INPUTS] = inputs
        return batch

    def fingerprint(self) -> str:
        """A hash of how images become pixels (the image processor's settings): part of the reference cache's key."""
        settings = self.processor.image_processor.to_json_string()
        return hashlib.sha256(settings.encode()).hexdigest()[:16]


def layout_collator(collator: Any) -> Any:
    """The text layout's collator inside a :class:`VisionCollator`, or the collator itself."""
    return collator.layout if isinstance(collator, VisionCollator) else collator
