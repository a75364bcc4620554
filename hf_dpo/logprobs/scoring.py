"""Per-sequence completion log-probabilities, computed without a float32 copy of the full logits.

A causal LM's output at position ``t`` scores the token at ``t + 1``. For a batch in any layout of
:mod:`hf_dpo.batch.shared_prompt`, :func:`sequence_scores` returns, per sequence, the sum of ``log p(label_t)`` over its
completion tokens and the number of those tokens, plus (without gradients) the per-token statistics TRL logs and
WPO weighs by (entropy, mean logit, whether the label is the top-1 token, ``log p - log Σ p²``). Tokens can be
weighted (LD-DPO's ``ld_alpha``: :func:`hf_dpo.batch.shared_prompt.ld_token_weights`).

Memory: a 7B model with a 128k vocabulary produces ``N x T x 128k`` logits; a float32 log-softmax of all of them
doubles that, and autograd keeps it for backward. Two paths avoid it:

- **hidden states** (the default where the model allows it, :mod:`hf_dpo.logprobs.from_hidden`): the model runs with
  ``logits_to_keep=1`` and only the scored positions' final hidden states are projected through ``lm_head``, a
  chunk at a time, inside an autograd function that recomputes them in backward. No logits tensor exists, and
  under autocast no float32 copy of one either.
- **logits**: the model's logits from the batch's first scored position on (``logits_to_keep``), scored a chunk at
  a time in float32 by a hand-written backward that recomputes the softmax per chunk from the saved logits.

Which path runs is logged once per model class; :func:`scoring_path` switches the hidden-state path off.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.batch import shared_prompt as layouts
from hf_dpo.data.columns import IGNORE_INDEX
from hf_dpo.logprobs.from_hidden import (
    STAT_NAMES,
    ProjectedTokenLogProbs,
    captured_output,
    decoder_and_head,
    head_matches,
    score_chunks,
    score_grad,
)
from hf_dpo.logprobs.from_hidden import chunk_rows as _chunk_rows
from hf_dpo.models.wrappers import base_model

__all__ = ["IGNORE_INDEX", "STAT_NAMES", "CompletionScores", "completion_scores", "sequence_logps", "sequence_scores"]
logger = logging.getLogger(__name__)

_HIDDEN_STATES = contextvars.ContextVar("hf_dpo_hidden_state_scoring", default=True)
_LOGGED: set[str] = set()
_HEAD_MISMATCH = "from logits: its logits are not lm_head(hidden states) (checked on its first batch)"
_HEAD_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # lm_head -> are the logits lm_head(h)?


@contextlib.contextmanager
def scoring_path(hidden_states: bool) -> Iterator[None]:
    """Inside the block, score from the final hidden states where the model allows it (``True``) or always from
    the model's logits (``False``)."""
    token = _HIDDEN_STATES.set(hidden_states)
    try:
        yield
    finally:
        _HIDDEN_STATES.reset(token)


class _TokenLogProbs(torch.autograd.Function):
    """``log softmax(logits[row])[target]`` for selected rows of a ``[R, V]`` logits matrix, float32 out; with
    ``with_stats``, also ``[R, 4]`` no-grad statistics per row (see ``STAT_NAMES``)."""

    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, with_stats: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        token_logps, logsumexp, stats = score_chunks(
            lambda start, end: logits.index_select(0, rows[start:end]).float(), targets, logits.shape[-1], with_stats
        )
        ctx.save_for_backward(logits, rows, targets, logsumexp)
        ctx.mark_non_differentiable(stats)
        return token_logps, stats

    @staticmethod
    def backward(
        ctx, grad_token_logps: torch.Tensor, grad_stats: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        logits, rows, targets, logsumexp = ctx.saved_tensors
        step = _chunk_rows(logits.shape[-1])
        grad_logits = torch.zeros_like(logits)
        for start in range(0, rows.numel(), step):
            end = start + step
            scores = logits.index_select(0, rows[start:end]).float()
            chunk_grad = score_grad(scores, targets[start:end], logsumexp[start:end], grad_token_logps[start:end])
            # index_add: in the shared-prompt layout a prompt's last position scores the first token of each completion
            grad_logits.index_add_(0, rows[start:end], chunk_grad.to(grad_logits.dtype))
        return grad_logits, None, None, None


@dataclass
class CompletionScores:
    """Per-sequence sums over completion tokens, each of shape ``[N]``.

    ``logps`` (float32, differentiable) weights each token by ``token_weights`` when given (1 otherwise);
    ``num_tokens`` counts the scored tokens; ``stats`` (no grad, float32 ``[N, 4]``, or ``None``) sums the
    per-token statistics named in ``STAT_NAMES``.
    """

    logps: torch.Tensor
    num_tokens: torch.Tensor
    stats: torch.Tensor | None = None

    def stat(self, name: str) -> torch.Tensor:
        return self.stats[:, STAT_NAMES.index(name)]


def _summed(
    tokens: layouts.ScoredTokens,
    token_logps: torch.Tensor,
    token_stats: torch.Tensor,
    token_weights: torch.Tensor | None,
    with_stats: bool,
) -> CompletionScores:
    if token_weights is not None:
        token_logps = token_logps * token_weights.reshape(-1)[tokens.target].to(token_logps.dtype)
    stats = tokens.per_sequence(token_stats) if with_stats else None
    return CompletionScores(tokens.per_sequence(token_logps), tokens.counts(), stats)


def completion_scores(
    logits: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    with_stats: bool = False,
    tokens: layouts.ScoredTokens | None = None,
) -> CompletionScores:
    """Summed completion log-probs (and statistics) from logits aligned with the last ``K`` positions of ``labels``.

    Args:
        logits (`torch.Tensor` of shape `[R, K, V]`): the model's scores for positions ``T-K .. T-1`` (``K == T``
            for full logits), in any floating dtype.
        labels (`torch.Tensor` of shape `[R, T]`): token ids, ``-100`` where a token is not scored.
        token_weights (`torch.Tensor` of shape `[R, T]`, *optional*): a weight per label position.
        with_stats: also sum the per-token statistics of ``STAT_NAMES``.
        tokens: which position scores which token of which sequence (:func:`hf_dpo.batch.shared_prompt.scored_tokens`);
            by default the padded layout's (one row per sequence).
    """
    rows, kept, vocab = logits.shape
    width = labels.shape[1]
    if tokens is None:
        tokens = layouts.scored_tokens({"labels": labels})
    # flat position r * T + c of the inputs -> row r * K + c - (T - K) of the kept logits
    offset = width - kept
    source = tokens.source // width * kept + tokens.source % width - offset
    token_logps, token_stats = _TokenLogProbs.apply(
        logits.reshape(rows * kept, vocab), source, tokens.labels, with_stats
    )
    return _summed(tokens, token_logps, token_stats, token_weights, with_stats)


def token_logps_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logps, num_tokens)`` of :func:`completion_scores`: float32 `[N]` sums of
    ``log p(labels[n, t] | labels[n, :t])`` over scored tokens, and their number (long `[N]`).

    >>> logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    >>> token_logps_from_logits(logits, torch.tensor([[0, -100, 1]]))[0].exp()  # only label 1 at t=2 is scored
    tensor([0.7500])
    """
    scores = completion_scores(logits, labels)
    return scores.logps, scores.num_tokens


def ld_token_weights(labels: torch.Tensor, ld_alpha: float) -> torch.Tensor:
    """LD-DPO's weights for a padded ``[2B, T]`` batch of ``[chosen; rejected]`` labels (see
    :func:`hf_dpo.batch.shared_prompt.ld_token_weights`, which takes any layout)."""
    return layouts.ld_token_weights({"labels": labels}, ld_alpha)


def supports_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the transformers model inside ``model`` (maybe DDP- and PEFT-wrapped) takes ``logits_to_keep``."""
    return "logits_to_keep" in inspect.signature(base_model(model).forward).parameters


def _log_path(model: torch.nn.Module, path: str) -> None:
    message = f"{type(model).__name__}: completion log-probs {path}"
    if message not in _LOGGED:
        _LOGGED.add(message)
        logger.info(message)


def _model_inputs(base: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    attention = getattr(getattr(base, "config", None), "_attn_implementation", None)
    embeddings = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    dtype = embeddings.weight.dtype if embeddings is not None else torch.float32
    return layouts.model_inputs(batch, attention, dtype if dtype.is_floating_point else torch.float32)


def _hidden_state_scores(
    model: torch.nn.Module,
    base: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    tokens: layouts.ScoredTokens,
    with_stats: bool,
    forward_kwargs: dict[str, Any],
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, Any, str]:
    """``((token_logps, token_stats), outputs, path)`` from the final hidden states, or ``(None, None, why not)``."""
    if not _HIDDEN_STATES.get():
        return None, None, "from logits (switched off)"
    found = decoder_and_head(base)
    if isinstance(found, str):
        return None, None, f"from logits: {found}"
    decoder, head = found
    if _HEAD_CHECKED.get(head) is False:
        return None, None, _HEAD_MISMATCH
    model_inputs = _model_inputs(base, inputs)
    with captured_output(decoder) as captured:
        outputs = model(**model_inputs, use_cache=False, logits_to_keep=1, **forward_kwargs)
    hidden, dtype = captured[-1] if captured else (None, None)
    if hidden is None or hidden.shape[:2] != inputs["input_ids"].shape:
        return None, None, "from logits: the decoder's output is not its last hidden states"
    if head not in _HEAD_CHECKED:
        _HEAD_CHECKED[head] = head_matches(head, hidden[:, -1].detach(), outputs.logits[:, -1], dtype)
        if not _HEAD_CHECKED[head]:
            return None, None, _HEAD_MISMATCH
    rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, tokens.source)
    scored = ProjectedTokenLogProbs.apply(rows, head.weight, head.bias, tokens.labels, with_stats, dtype)
    return scored, outputs, "from the final hidden states (no logits tensor)"


def sequence_scores(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    token_weights: torch.Tensor | None = None,
    with_stats: bool = True,
    **forward_kwargs: Any,
) -> tuple[CompletionScores, Any]:
    """One forward pass of ``model`` over a batch in any layout: per-sequence :class:`CompletionScores` (in the
    padded layout's sequence order) and the model's outputs (for ``aux_loss``).

    Args:
        model: a causal LM (maybe DDP-, DeepSpeed- or PEFT-wrapped).
        inputs: the collator's batch: ``input_ids``, ``attention_mask``, ``labels`` (``-100`` where not scored),
            and the layout's own columns (:mod:`hf_dpo.batch.shared_prompt`).
        token_weights (`torch.Tensor` shaped like ``labels``, *optional*): a weight per label position.
        with_stats: also sum the per-token statistics of ``STAT_NAMES``.
        forward_kwargs: passed to the model (``output_router_logits``).
    """
    base = base_model(model)
    tokens = layouts.scored_tokens(inputs)
    scored, outputs, path = _hidden_state_scores(model, base, inputs, tokens, with_stats, forward_kwargs)
    _log_path(base, path)
    if scored is not None:
        return _summed(tokens, *scored, token_weights, with_stats), outputs
    width = inputs["labels"].shape[1]
    if supports_logits_to_keep(base) and tokens.source.numel() > 0:
        # The first completion token is predicted from the position before it.
        forward_kwargs["logits_to_keep"] = width - int((tokens.source % width).min())
    outputs = model(**_model_inputs(base, inputs), use_cache=False, **forward_kwargs)
    return completion_scores(outputs.logits, inputs["labels"], token_weights, with_stats, tokens), outputs


def sequence_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    **layout_columns: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logps, num_tokens)`` of :func:`sequence_scores` (float32 and long, each ``[N]``), without statistics."""
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, **layout_columns}
    scores, _ = sequence_scores(model, batch, token_weights, with_stats=False)
    return scores.logps, scores.num_tokens
