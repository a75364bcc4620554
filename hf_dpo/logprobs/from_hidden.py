"""Token log-probs straight from the final hidden states: the ``[N, T, V]`` logits tensor never exists.

A causal LM's logits are ``lm_head(h)`` for the decoder's last hidden states ``h``. DPO needs only the scored
tokens' ``log softmax(lm_head(h))[target]``, so :class:`ProjectedTokenLogProbs` projects just the scored positions,
a chunk of rows at a time, keeps the chunk's float32 log-sum-exp and throws the chunk away; backward recomputes
each chunk's softmax. The ``lm_head`` weight gets a gradient only when it is trainable (a full fine-tune, tied
embeddings included: the shared parameter sums both gradients), never under LoRA. Extra memory: one chunk of
float32 scores, whatever the vocabulary.

The hidden states come from the model's own modules: :func:`decoder_and_head` finds the decoder
(``get_decoder()``) and the output projection (``get_output_embeddings()``); the model runs through its usual
wrappers (DDP, PEFT, autocast) with ``logits_to_keep=1``, and a forward hook on the decoder hands over its output.
The one logit position the model still computes checks the projection once per model: a model that does more than
``lm_head(h)`` (soft-capping, scaling) is caught there and keeps the logits path.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import torch

from hf_dpo.logprobs.chunks import chunk_rows, score_chunks, score_grad

logger = logging.getLogger(__name__)


class ProjectedTokenLogProbs(torch.autograd.Function):
    """``log softmax(h @ W.T + b)[target]`` for rows ``h`` of hidden states ``[M, H]``, float32 ``[M]`` out; with
    ``with_stats``, also ``[M, 4]`` no-grad statistics per row (see ``STAT_NAMES``).

    The projection runs in ``dtype`` (the autocast dtype the model ran under, else the hidden states' own), as the
    model's ``lm_head`` would, and the softmax in float32.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        with_stats: bool,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.dtype = dtype
        project = _projector(hidden, weight, bias, dtype)
        token_logps, logsumexp, stats = score_chunks(project, targets, weight.shape[0], with_stats)
        ctx.save_for_backward(hidden, weight, bias, targets, logsumexp)
        ctx.mark_non_differentiable(stats)
        return token_logps, stats

    @staticmethod
    def backward(ctx, grad_token_logps: torch.Tensor, grad_stats: torch.Tensor) -> tuple[Any, ...]:
        hidden, weight, bias, targets, logsumexp = ctx.saved_tensors
        project = _projector(hidden, weight, bias, ctx.dtype)
        compute_weight = project.weight
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        grad_bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device)
        weight_grad, bias_grad = ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]
        step = chunk_rows(weight.shape[0])
        for start in range(0, targets.numel(), step):
            end = min(start + step, targets.numel())
            grad = score_grad(
                project(start, end), targets[start:end], logsumexp[start:end], grad_token_logps[start:end]
            )
            if grad_hidden is not None:
                grad_hidden[start:end] = grad.to(compute_weight.dtype) @ compute_weight
            if weight_grad:
                grad_weight.addmm_(grad.T, hidden[start:end].float())
            if bias_grad:
                grad_bias += grad.sum(0)
        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if weight_grad else None,
            grad_bias.to(bias.dtype) if bias_grad else None,
            None,
            None,
            None,
        )


class _projector:
    """float32 scores of rows ``start:end`` of ``hidden``, projected in ``dtype`` (default: the hidden states'),
    the weight cast once per call when it differs, as autocast would cast it."""

    def __init__(
        self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype | None = None
    ) -> None:
        self.dtype = dtype = dtype or hidden.dtype
        self.hidden = hidden
        self.weight = weight if weight.dtype == dtype else weight.to(dtype)
        self.bias = bias if bias is None or bias.dtype == dtype else bias.to(dtype)

    def __call__(self, start: int, end: int) -> torch.Tensor:
        rows = self.hidden[start:end].to(self.dtype)
        return torch.nn.functional.linear(rows, self.weight, self.bias).float()


# ---- finding the decoder and the head ------------------------------------------------------------------------


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Linear] | str:
    """The decoder whose output the head projects and the head itself, for ``model`` (the transformers model
    inside any DDP/PEFT wrapper), or why the hidden-state path cannot run for it."""
    config = getattr(model, "config", None)
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return f"{type(model).__name__}.forward takes no logits_to_keep"
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return "its logits are soft-capped or scaled after the head"
    get_head, get_decoder = getattr(model, "get_output_embeddings", None), getattr(model, "get_decoder", None)
    head = get_head() if get_head else None
    decoder = get_decoder() if get_decoder else None
    if type(head) is not torch.nn.Linear:  # an adapter or a quantized layer on the head: keep its own forward
        return f"its output head is a {type(head).__name__}, not a plain Linear"
    if decoder is None or decoder is model:
        return "no decoder module found (get_decoder())"
    weight = head.weight
    if hasattr(weight, "ds_id") or type(weight).__name__ == "DTensor" or weight.numel() == 0:
        return "its output head is sharded (DeepSpeed ZeRO-3 or FSDP)"
    return decoder, head


@contextlib.contextmanager
def captured_output(module: torch.nn.Module) -> Iterator[list[tuple[torch.Tensor, torch.dtype | None]]]:
    """Inside the block, the first tensor ``module`` returns (its last hidden states) lands in the yielded list,
    with the autocast dtype it ran under (``None``: no autocast), which the head's projection must use too."""
    captured: list[tuple[torch.Tensor, torch.dtype | None]] = []

    def hook(_module: torch.nn.Module, _args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        captured.append((hidden, dtype))

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def head_matches(
    head: torch.nn.Linear, last_hidden: torch.Tensor, last_logits: torch.Tensor, dtype: torch.dtype | None
) -> bool:
    """Whether the model's logits at the last position are ``head(last_hidden)`` (to the precision it ran at)."""
    with torch.no_grad():
        project = _projector(last_hidden, head.weight, head.bias, dtype)
        projected, expected = project(0, last_hidden.shape[0]), last_logits.float()
        tolerance = 1e-4 if project.dtype == torch.float32 else 5e-2
        scale = expected.abs().max().clamp(min=1.0)
        return bool(((projected - expected).abs().max() / scale) <= tolerance)
