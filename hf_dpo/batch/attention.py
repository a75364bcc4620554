"""How a model reads the shared-prompt layout: an attention function registered with transformers
(``AttentionInterface``), which runs each group's spans through the model's own kernel, with no ``L x L`` mask.

For each group ``prompt + completion_1 + ... + completion_k`` of a batch (:class:`~hf_dpo.batch.segments.Segments`):

- the prompt and the first completion are one causal run: the kernel's causal fast path (sdpa's ``is_causal``, or
  FlashAttention's ``causal=True``), exactly what the padded row of ``prompt + completion_1`` computes;
- each later completion's queries attend ``[prompt keys; its own keys]``, causal from the bottom right: what the
  padded row of ``prompt + completion_k`` computes for those tokens.

Sliding windows (the layer's own ``sliding_window``, measured in each token's own positions), soft-capped scores
(Gemma 2's ``softcap``, through the model's own eager function) and attention sinks pass through to the kernel.
With FlashAttention 2/3 every run of the batch goes into one ``flash_attn_varlen_func`` call
(``cu_seqlens_q`` != ``cu_seqlens_k`` for the continuations): no padding at all.

The function is selected for the duration of a scoring pass by :func:`reading_shared_prompt`, which switches the
decoder's ``_attn_implementation`` to :data:`ATTENTION` and back; because no mask function is registered under that
name, transformers builds no mask at all, and the batch's 2D ``attention_mask`` still reaches what reads it (a
mixture-of-experts router's load-balancing loss then counts the real tokens of the layout). A model's gradient
checkpointing recomputes its layers in backward: the switch must then last until backward is done (the trainer
holds it around its whole training step).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from hf_dpo.batch.segments import Segments
from hf_dpo.models.wrappers import base_model

ATTENTION = "hf_dpo_shared_prompt"
KERNELS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")  # the kernels the function runs spans through
FLASH = ("flash_attention_2", "flash_attention_3")
LAYER_TYPES = {"full_attention", "sliding_attention"}  # per-layer kinds the function reads (no linear or chunked)
_READING: dict[int, list] = {}  # id(decoder config) -> [config, depth of nested blocks, the kernel it had]


@dataclass(frozen=True)
class SharedPromptCall:
    """What a scoring pass hands every attention layer: the batch's groups and the kernel to run them through."""

    segments: Segments
    kernel: str


def decoder_config(model: torch.nn.Module) -> Any:
    """The config the decoder's attention layers read their implementation from (a VLM's text config)."""
    base = base_model(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    return getattr(decoder, "config", None) or base.config


def kernel_of(model: torch.nn.Module) -> str | None:
    """The attention implementation the model's decoder runs when not reading the shared-prompt layout."""
    implementation = getattr(decoder_config(model), "_attn_implementation", None)
    if implementation == ATTENTION:
        return _READING[id(decoder_config(model))][2]
    return implementation


def is_reading(model: torch.nn.Module) -> bool:
    """Whether ``model`` is inside a :func:`reading_shared_prompt` block."""
    return id(decoder_config(model)) in _READING


def checkpoints_activations(model: torch.nn.Module) -> bool:
    """Whether ``model`` recomputes its layers in backward (gradient checkpointing is on)."""
    return any(getattr(module, "gradient_checkpointing", False) is True for module in base_model(model).modules())


def attention_support(model: torch.nn.Module) -> str | None:
    """``None`` when ``model`` (maybe DDP- and PEFT-wrapped) can read the shared-prompt layout through the attention
    function, else why not."""
    base = base_model(model)
    config = decoder_config(model)
    kernel = kernel_of(model)
    if kernel not in KERNELS:
        return f"attention implementation {kernel!r} has no shared-prompt path (these do: {', '.join(KERNELS)})"
    if "position_ids" not in inspect.signature(base.forward).parameters:
        return f"{type(base).__name__}.forward takes no position_ids"
    layer_types = set(getattr(config, "layer_types", None) or ())
    if layer_types - LAYER_TYPES:
        return f"its layers include {', '.join(sorted(layer_types - LAYER_TYPES))}, which the function cannot read"
    if getattr(config, "attention_chunk_size", None):
        return "chunked attention (attention_chunk_size) has no shared-prompt path"
    return None


@contextlib.contextmanager
def reading_shared_prompt(model: torch.nn.Module) -> Iterator[str]:
    """Inside the block, ``model``'s decoder attends through :data:`ATTENTION`; yields the kernel it had. Blocks may
    nest (a training step holds one around the forward and the backward its checkpointing recomputes in)."""
    config = decoder_config(model)
    entry = _READING.get(id(config))
    if entry is None:
        entry = _READING[id(config)] = [config, 0, config._attn_implementation]
        config._attn_implementation = ATTENTION
    entry[1] += 1
    try:
        yield entry[2]
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            config._attn_implementation = entry[2]
            del _READING[id(config)]


@contextlib.contextmanager
def own_kernel(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, ``model``'s decoder attends through its own kernel again, even within a
    :func:`reading_shared_prompt` block (a forward over plain padded rows)."""
    entry = _READING.get(id(decoder_config(model)))
    if entry is None:
        yield
        return
    entry[0]._attn_implementation = entry[2]
    try:
        yield
    finally:
        entry[0]._attn_implementation = ATTENTION


def shared_prompt_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    hf_dpo_shared_prompt: SharedPromptCall | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over a shared-prompt batch (``query`` ``[B, H, L, D]``, ``key``/``value`` ``[B, H_kv, L, D]``):
    ``[B, L, H, D]`` out, padding positions zero. ``attention_mask`` is ignored (none is built for this name)."""
    if hf_dpo_shared_prompt is None:  # a dense 4D mask, inside a reading block: the model's own kernel reads it
        entry = _READING.get(id(getattr(module, "config", None)))
        if entry is None or attention_mask is None or attention_mask.dim() != 4:
            raise RuntimeError(
                f"{type(module).__name__} attends through {ATTENTION!r} without a shared-prompt batch or a 4D mask; "
                "the implementation is only selected inside reading_shared_prompt(), for a ScoredBatch's inputs"
            )
        return _kernel(module, entry[2])(module, query, key, value, attention_mask, is_causal=False, **kwargs)
    kwargs.pop("position_ids", None)  # the spans carry the positions; a kernel must not infer packing from them
    call = hf_dpo_shared_prompt
    if call.kernel in FLASH:
        return _varlen(module, query, key, value, call, kwargs), None
    out = query.new_zeros(query.shape[0], query.shape[2], query.shape[1], query.shape[3])
    window = kwargs.get("sliding_window")
    kernel = _kernel(module, call.kernel)
    for run in call.segments.runs():
        row, own = run.row, slice(run.start, run.end)
        k_run, v_run = key[row : row + 1, :, own], value[row : row + 1, :, own]
        if run.prompt_length:  # a later completion reads its prompt's keys first
            prompt = slice(run.prompt_start, run.prompt_end)
            k_run = torch.cat([key[row : row + 1, :, prompt], k_run], dim=2)
            v_run = torch.cat([value[row : row + 1, :, prompt], v_run], dim=2)
        mask = _run_mask(call.kernel, run.prompt_length, run.end - run.start, window, query.dtype, query.device)
        run_out, _ = kernel(module, query[row : row + 1, :, own], k_run, v_run, mask, is_causal=mask is None, **kwargs)
        out[row, own] = run_out[0]
    return out, None


def _run_mask(
    kernel: str, prompt_length: int, own_length: int, window: int | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | None:
    """The mask of one run: ``own_length`` queries after ``prompt_length`` prompt keys (0 for a group's first run),
    or ``None`` where the kernel's own causal path is exactly what the run needs. Key ``j`` is visible to query ``i``
    when ``pos_j <= pos_i`` and, with a window, ``pos_i - pos_j < window`` (positions in the token's own sequence:
    a continuation's restart after its prompt)."""
    bites = window is not None and prompt_length + own_length > window
    if kernel == "sdpa" and not prompt_length and not bites:
        return None
    query_positions = torch.arange(prompt_length, prompt_length + own_length, device=device)
    key_positions = torch.cat([torch.arange(prompt_length, device=device), query_positions])
    distance = query_positions[:, None] - key_positions[None, :]
    allowed = distance >= 0
    if window is not None:
        allowed &= distance < window
    if kernel == "sdpa":
        return allowed[None, None]
    additive = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return additive.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]


def _kernel(module: torch.nn.Module, name: str) -> Any:
    """The function a kernel name runs: the model's own eager function (it may soft-cap), or transformers'."""
    if name == "eager":
        own = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if own is not None:
            return lambda module, q, k, v, mask, is_causal, **kwargs: own(module, q, k, v, mask, **kwargs)
    return ALL_ATTENTION_FUNCTIONS[name]


def _varlen(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    call: SharedPromptCall,
    kwargs: dict[str, Any],
) -> torch.Tensor:
    """Every run of the batch in one FlashAttention varlen call: queries packed run after run, keys packed with
    each continuation's prompt keys first (causal is bottom-right aligned when the key run is longer)."""
    width = query.shape[2]
    query_index, key_index, query_lengths, key_lengths = [], [], [0], [0]
    for run in call.segments.runs():
        offset = run.row * width
        own = torch.arange(offset + run.start, offset + run.end)
        query_index.append(own)
        key_index.append(torch.cat([torch.arange(offset + run.prompt_start, offset + run.prompt_end), own]))
        query_lengths.append(run.end - run.start)
        key_lengths.append(run.prompt_length + run.end - run.start)
    device = query.device
    query_index, key_index = torch.cat(query_index).to(device), torch.cat(key_index).to(device)

    def packed(states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # [B, H, L, D] -> [1, H, N, D]
        flat = states.transpose(1, 2).reshape(-1, states.shape[1], states.shape[3])
        return flat.index_select(0, index).transpose(0, 1)[None]

    cu_q = torch.tensor(query_lengths, device=device, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    cu_k = torch.tensor(key_lengths, device=device, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    run_out, _ = ALL_ATTENTION_FUNCTIONS[call.kernel](
        module,
        packed(query, query_index),
        packed(key, key_index),
        packed(value, key_index),
        None,
        is_causal=True,
        cu_seq_lens_q=cu_q,
        cu_seq_lens_k=cu_k,
        max_length_q=max(query_lengths),
        max_length_k=max(key_lengths),
        **kwargs,
    )
    out = query.new_zeros(query.shape[0] * width, query.shape[1], query.shape[3])
    out = out.index_copy(0, query_index, run_out.reshape(-1, query.shape[1], query.shape[3]).to(out.dtype))
    return out.reshape(query.shape[0], width, query.shape[1], query.shape[3])


AttentionInterface.register(ATTENTION, shared_prompt_attention)
