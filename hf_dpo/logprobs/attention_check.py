"""The first batch a model scores through the shared-prompt attention function is also run as padded rows, one row
per sequence, and the decoder's last hidden states compared token by token: a model whose layers do not attend
through transformers' attention interface (custom code, say) would otherwise read the layout wrongly without a word.
A mismatch sends that model to the dense-mask path for good (where that path is exact), and the log says why."""

from __future__ import annotations

import inspect
import logging
import weakref
from typing import Any

import torch

from hf_dpo.batch import ScoredBatch
from hf_dpo.batch.attention import own_kernel, reading_shared_prompt
from hf_dpo.batch.vision_inputs import sequence_image_inputs
from hf_dpo.logprobs.from_hidden import captured_output
from hf_dpo.models.modes import eval_mode
from hf_dpo.models.wrappers import base_model

logger = logging.getLogger(__name__)

_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # base model -> does the function read it right?


def attention_function_matches(model: torch.nn.Module, batch: ScoredBatch) -> bool:
    """Whether ``model`` reads ``batch`` through the attention function as it reads each sequence in a row of its
    own (checked once per model, on its first shared-prompt batch)."""
    base = base_model(model)
    if base in _CHECKED:
        return _CHECKED[base]
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    if decoder is None:
        _CHECKED[base] = False
        return False
    shared_index, padded_index, padded = _as_padded_rows(batch)
    padded |= sequence_image_inputs(model, batch)  # each sequence's row with its pair's images
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}
    with torch.no_grad(), eval_mode(model):
        with captured_output(decoder) as through_function, reading_shared_prompt(model):
            model(**batch.model_inputs(model), use_cache=False, **keep)
        with captured_output(decoder) as through_rows, own_kernel(model):
            model(**padded, use_cache=False, **keep)
    matches = bool(through_function and through_rows) and _close(
        through_function[-1], through_rows[-1][0], shared_index, padded_index
    )
    _CHECKED[base] = matches
    if not matches:
        logger.warning(
            "%s: its layers do not read the shared-prompt attention function as they read separate rows (checked on "
            "its first batch)",
            type(base).__name__,
        )
    return matches


def _as_padded_rows(batch: ScoredBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The batch's sequences as right-padded rows, and where each of their tokens sits in both layouts (flat)."""
    ids = batch.input_ids.cpu()
    sequences, shared, padded = [], [], []
    width = ids.shape[1]
    for group in batch.segments.groups:
        prompt = list(range(group.row * width + group.start, group.row * width + group.prompt_end))
        for start, end in group.completions():
            positions = prompt + list(range(group.row * width + start, group.row * width + end))
            sequences.append(positions)
    length = max(len(positions) for positions in sequences)
    input_ids = torch.zeros(len(sequences), length, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, positions in enumerate(sequences):
        input_ids[row, : len(positions)] = ids.reshape(-1)[positions]
        attention_mask[row, : len(positions)] = 1
        shared += positions
        padded += range(row * length, row * length + len(positions))
    device = batch.device
    inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
    return torch.tensor(shared, device=device), torch.tensor(padded, device=device), inputs


def _close(captured: Any, rows_hidden: torch.Tensor, shared_index: torch.Tensor, padded_index: torch.Tensor) -> bool:
    hidden, autocast = captured
    got = hidden.reshape(-1, hidden.shape[-1]).index_select(0, shared_index).float()
    expected = rows_hidden.reshape(-1, rows_hidden.shape[-1]).index_select(0, padded_index).float()
    tolerance = 1e-4 if hidden.dtype == torch.float32 and autocast is None else 5e-2
    scale = expected.abs().max().clamp(min=1.0)
    return bool(((got - expected).abs().max() / scale) <= tolerance)
