"""One step's batch as one object, built once from the collator's columns and handed to the policy's scoring, the
reference and the metrics: what the model reads, which tokens are scored, their weights and the counts.

    batch = ScoredBatch.from_collated(inputs, ld_alpha=args.ld_alpha)   # inputs: a collator's batch, on its device
    model(**batch.model_inputs(model))                                    # the layout's mask, built once per kind

Any collator's output works: :class:`~hf_dpo.batch.padded.DPODataCollator`'s padded ``[2B, T]`` rows (a user's own
collator too), or :class:`~hf_dpo.batch.shared_prompt.SharedPromptCollator`'s groups, told apart by their columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from hf_dpo.batch.attention import SharedPromptCall, attention_support, kernel_of
from hf_dpo.batch.dense_mask import shared_prompt_model_inputs
from hf_dpo.batch.scored_tokens import (
    GROUP_COLUMN,
    SEGMENT_COLUMN,
    ScoredTokens,
    input_token_counts,
    ld_token_weights,
    padded_tokens,
    shared_prompt_tokens,
)
from hf_dpo.batch.segments import Segments
from hf_dpo.batch.vision_inputs import image_model_inputs
from hf_dpo.models.wrappers import base_model

MODEL_COLUMNS = ("input_ids", "attention_mask", "labels", "position_ids", GROUP_COLUMN, SEGMENT_COLUMN)


@dataclass
class ScoredBatch:
    """A step's batch, in any layout.

    Attributes:
        input_ids, attention_mask: `[R, L]`, as the collator made them (1 on tokens, 0 on padding).
        tokens: the scored tokens (:class:`~hf_dpo.batch.scored_tokens.ScoredTokens`).
        token_weights: `[M]` a weight per scored token (LD-DPO), or ``None``.
        input_tokens: `[N]` each sequence's prompt and completion tokens (TRL's ``num_tokens`` counts them).
        layout_columns: the shared-prompt layout's ``position_ids``, ``group_ids``, ``segment_ids`` (empty when
            padded).
        segments: the shared-prompt layout's groups, where each span sits (``None`` when padded).
        columns: every other column of the collator's batch (precomputed reference log-probs, KTO's labels, ...).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    tokens: ScoredTokens
    token_weights: torch.Tensor | None
    input_tokens: torch.Tensor
    layout_columns: dict[str, torch.Tensor]
    columns: dict[str, Any]
    segments: Segments | None = None
    _model_inputs: dict[tuple[str | None, torch.dtype, bool], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_collated(cls, batch: dict[str, Any], ld_alpha: float | None = None) -> ScoredBatch:
        """The batch of a collator's columns (``input_ids``, ``attention_mask``, ``labels``, and the layout's)."""
        shared = SEGMENT_COLUMN in batch
        labels = batch["labels"]
        spans = None
        if shared:
            groups, segments = batch[GROUP_COLUMN], batch[SEGMENT_COLUMN]
            tokens, spans = shared_prompt_tokens(labels, groups, segments)
        else:
            groups = segments = None
            tokens = padded_tokens(labels)
        return cls(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            tokens=tokens,
            token_weights=None if ld_alpha is None else ld_token_weights(tokens, ld_alpha),
            input_tokens=input_token_counts(tokens, batch["attention_mask"], groups, segments),
            layout_columns={name: batch[name] for name in ("position_ids", GROUP_COLUMN, SEGMENT_COLUMN) if shared},
            columns={name: value for name, value in batch.items() if name not in MODEL_COLUMNS},
            segments=spans,
        )

    @property
    def shared_prompt(self) -> bool:
        return bool(self.layout_columns)

    @property
    def num_sequences(self) -> int:
        return self.tokens.num_sequences

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    def model_inputs(self, model: torch.nn.Module, dense: bool = False) -> dict[str, Any]:
        """The inputs ``model`` (maybe DDP- and PEFT-wrapped) reads this layout through, built once per attention
        kernel and activation dtype (the policy's and a reference's may differ).

        Padded: ``input_ids`` and the 2D mask. Shared prompt: where the model can, the spans for the attention
        function (:mod:`~hf_dpo.batch.attention`, read inside ``reading_shared_prompt``), the 2D mask of the real
        tokens and the position ids; else (or with ``dense``) a 4D mask (:mod:`~hf_dpo.batch.dense_mask`). With
        images, their inputs for the layout's rows too (:mod:`~hf_dpo.batch.vision_inputs`).
        """
        base = base_model(model)
        embeddings = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
        dtype = embeddings.weight.dtype if embeddings is not None else torch.float32
        dtype = dtype if dtype.is_floating_point else torch.float32
        function = self.shared_prompt and not dense and attention_support(model) is None
        key = (kernel_of(model), dtype, function)
        if key not in self._model_inputs:
            inputs: dict[str, Any] = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
            if function:
                call = SharedPromptCall(self.segments, kernel_of(model))
                inputs |= {"position_ids": self.layout_columns["position_ids"], "hf_dpo_shared_prompt": call}
            elif self.shared_prompt:
                inputs = shared_prompt_model_inputs(self.input_ids, self.layout_columns, kernel_of(model), dtype)
            self._model_inputs[key] = inputs | image_model_inputs(model, self)
        return self._model_inputs[key]

    def column(self, name: str) -> torch.Tensor:
        """A per-row column of the collator's batch, with an error naming what the batch has instead."""
        if name not in self.columns:
            raise KeyError(f"the batch has no column {name!r}; it has {sorted(self.columns)}")
        return self.columns[name]
