"""What a vision-language model reads besides the tokens, per layout: its image inputs, its token types, and, for the
Qwen-VL families' 3-D rotary positions, the positions of every sequence laid out in its group.

- Image inputs (:class:`~hf_dpo.batch.vision.ImageInputs`): the padded layout's row ``r`` holds pair ``r mod B``
  (chosen rows, then rejected rows); a shared-prompt row holds its groups' pairs, each once.
- Token types, where the model's forward takes them: ``mm_token_type_ids`` (Qwen-VL: 1 on image tokens, 2 on video
  tokens; what their rotary index reads) or ``token_type_ids`` (Gemma 3: 1 on image tokens), built from the ids, as
  the processor builds them.
- Positions (shared prompt only; padded rows let the model compute its own): a Qwen-VL model's (Qwen2-VL, Qwen2.5-VL,
  Qwen3-VL) rotary index (``get_rope_index``, the model's own) is computed for each sequence ``prompt + completion_k``
  as a row of its own, then laid out in the group: the prompt's positions once, each completion's after it. Every
  token then has the position it has in its own sequence, and the attention function hides each completion from the
  others: the same logits as separate rows.

Which vision-language families share the prompt (:func:`vision_layout_support`): those whose shared layout is tested
against separate rows (tests/batch/test_vision_layouts.py). Gemma 3 (and PaliGemma) attend bidirectionally within an
image, which the shared-prompt attention function, causal over a group's first run, does not read: their batches
are padded, and the log says why.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hf_dpo.batch.segments import Segments
from hf_dpo.batch.vision import IMAGE_INPUTS, ImageInputs
from hf_dpo.models.wrappers import base_model

if TYPE_CHECKING:
    from hf_dpo.batch.scored_batch import ScoredBatch

# model_type -> why its image tokens cannot share a prompt through the attention function
BIDIRECTIONAL_IMAGES = ("gemma3", "gemma3n", "paligemma")
# the families whose shared layout is checked against separate rows, image inputs and positions included
SHARED_PROMPT_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics3", "smolvlm", "llava")


def vision_layout_support(model: torch.nn.Module) -> str | None:
    """``None`` when ``model`` (maybe wrapped) reads a shared-prompt batch with images exactly, else why not."""
    model_type = getattr(base_model(model).config, "model_type", None)
    if model_type in BIDIRECTIONAL_IMAGES:
        return (
            f"{model_type} attends bidirectionally within each image (token_type_ids), and the shared-prompt "
            "attention function reads a group's prompt causally"
        )
    if model_type not in SHARED_PROMPT_FAMILIES:
        return (
            f"{model_type}'s image inputs have no tested shared-prompt layout (these do: "
            f"{', '.join(SHARED_PROMPT_FAMILIES)})"
        )
    return None


@dataclass(frozen=True)
class SequenceRows:
    """A shared-prompt batch's sequences ``prompt + completion_k`` as right-padded rows of their own, group by group
    (group 0's completions, then group 1's, ...): where each of their tokens sits in both layouts (flat indices)."""

    shared_index: torch.Tensor
    row_index: torch.Tensor
    groups: list[int]  # the group (pair) each row belongs to
    length: int

    @classmethod
    def of(cls, segments: Segments, device: torch.device) -> SequenceRows:
        width = segments.width
        shared, rows, groups, sequences = [], [], [], []
        for index, group in enumerate(segments.groups):
            base = group.row * width
            prompt = list(range(base + group.start, base + group.prompt_end))
            for start, end in group.completions():
                sequences.append(prompt + list(range(base + start, base + end)))
                groups.append(index)
        length = max(len(positions) for positions in sequences)
        for row, positions in enumerate(sequences):
            shared += positions
            rows += range(row * length, row * length + len(positions))
        as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
        return cls(as_tensor(shared), as_tensor(rows), groups, length)

    def gather(self, layout: torch.Tensor, fill: int = 0) -> torch.Tensor:
        """``layout`` ``[R, L]`` read into the sequences' rows ``[N, T]`` (``fill`` on their padding)."""
        rows = layout.new_full((len(self.groups), self.length), fill)
        rows.view(-1)[self.row_index] = layout.reshape(-1)[self.shared_index]
        return rows

    def mask(self) -> torch.Tensor:
        mask = torch.zeros(len(self.groups) * self.length, dtype=torch.long, device=self.shared_index.device)
        return mask.index_fill_(0, self.row_index, 1).view(len(self.groups), self.length)


def pairs_per_row(batch: ScoredBatch, images: ImageInputs) -> list[list[int]]:
    """The pairs whose images each model row of ``batch`` holds."""
    rows = batch.input_ids.shape[0]
    if batch.segments is None:
        if rows != 2 * images.num_pairs:
            raise ValueError(
                f"a padded batch with images must hold each pair's chosen and rejected rows ([chosen; rejected]): "
                f"{rows} rows for {images.num_pairs} pairs' images"
            )
        return [[row % images.num_pairs] for row in range(rows)]
    held: list[list[int]] = [[] for _ in range(rows)]
    for index, group in sorted(enumerate(batch.segments.groups), key=lambda item: (item[1].row, item[1].start)):
        held[group.row].append(index)
    return held


def token_types(model: torch.nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The token types ``model``'s forward reads, built from the ids (1 image, 2 video, 0 text)."""
    base = base_model(model)
    parameters = inspect.signature(base.forward).parameters
    name = next((name for name in ("mm_token_type_ids", "token_type_ids") if name in parameters), None)
    if name is None:
        return {}
    config = base.config
    types = (input_ids == config.image_token_id).long()
    video = getattr(config, "video_token_id", None)
    if video is not None:
        types = types.masked_fill(input_ids == video, 2)
    return {name: types}


def rope_index_model(model: torch.nn.Module) -> Any:
    """The module with the model's own 3-D rotary index (``get_rope_index``: the Qwen-VL families), or ``None``."""
    base = base_model(model)
    return next((module for module in (base, getattr(base, "model", None)) if hasattr(module, "get_rope_index")), None)


def shared_prompt_positions(
    model: torch.nn.Module, batch: ScoredBatch, images: ImageInputs, types: torch.Tensor
) -> torch.Tensor:
    """``[3, R, L]``: each sequence's own 3-D rotary positions (the model's ``get_rope_index`` on its own row), laid
    out in its group (a prompt's positions are the same in every one of its sequences)."""
    rows = SequenceRows.of(batch.segments, batch.device)
    grid = images.for_rows([[group] for group in rows.groups])["image_grid_thw"]
    positions, _ = rope_index_model(model).get_rope_index(
        rows.gather(batch.input_ids), mm_token_type_ids=rows.gather(types), image_grid_thw=grid,
        attention_mask=rows.mask(),
    )  # fmt: skip
    laid_out = torch.zeros(3, *batch.input_ids.shape, dtype=positions.dtype, device=positions.device)
    laid_out.view(3, -1)[:, rows.shared_index] = positions.reshape(3, -1)[:, rows.row_index]
    return laid_out


def image_model_inputs(model: torch.nn.Module, batch: ScoredBatch) -> dict[str, torch.Tensor]:
    """The image inputs, token types and (shared prompt, 3-D rotary positions) ``model`` reads ``batch`` with; nothing
    for a batch without images."""
    images = batch.columns.get(IMAGE_INPUTS)
    if images is None:
        return {}
    if batch.segments is not None and (why_not := vision_layout_support(model)) is not None:
        raise ValueError(
            f"this batch shares each prompt between its completions, and {type(base_model(model)).__name__} cannot "
            f"read it with images: {why_not}; use the padded layout (DPODataCollator, or prefix_sharing=False)"
        )
    images = images.to(batch.device)
    accepted = inspect.signature(base_model(model).forward).parameters
    inputs = {name: value for name, value in images.for_rows(pairs_per_row(batch, images)).items() if name in accepted}
    types = token_types(model, batch.input_ids)
    inputs |= types
    if batch.segments is not None and rope_index_model(model) is not None:
        types = types.get("mm_token_type_ids", (batch.input_ids == base_model(model).config.image_token_id).long())
        inputs["position_ids"] = shared_prompt_positions(model, batch, images, types)
    return inputs


def sequence_image_inputs(model: torch.nn.Module, batch: ScoredBatch) -> dict[str, torch.Tensor]:
    """For a shared-prompt batch's sequences as rows of their own (:class:`SequenceRows`' order), the image inputs
    and token types ``model`` reads them with (the model computes its own positions for such rows)."""
    images = batch.columns.get(IMAGE_INPUTS)
    if images is None:
        return {}
    rows = SequenceRows.of(batch.segments, batch.device)
    accepted = inspect.signature(base_model(model).forward).parameters
    laid_out = images.to(batch.device).for_rows([[group] for group in rows.groups])
    return {name: value for name, value in laid_out.items() if name in accepted} | token_types(
        model, rows.gather(batch.input_ids)
    )
