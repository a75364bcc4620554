"""Per-sequence completion log-probabilities of a batch in any layout, without a float32 copy of the full logits.

:func:`sequence_scores` runs one forward pass of a model over a :class:`~hf_dpo.batch.ScoredBatch` and returns, per
sequence (in the padded layout's order), the sum of ``log p(label_t)`` over its completion tokens (weighted by the
batch's token weights, LD-DPO's, when it has them) and the number of those tokens, plus (without gradients) the
per-token statistics TRL logs and WPO weighs by (entropy, mean logit, whether the label is the top-1 token,
``log p - log Σ p²``).

Memory: a 7B model with a 128k vocabulary produces ``N x T x 128k`` logits; a float32 log-softmax of all of them
doubles that, and autograd keeps it for backward. Two paths avoid it:

- **hidden states** (``hidden_states=True``, the default where the model allows it, :mod:`~hf_dpo.logprobs.from_hidden`):
  the model runs with ``logits_to_keep=1`` and only the scored positions' final hidden states are projected through
  ``lm_head``, a chunk at a time, inside an autograd function that recomputes them in backward. No logits tensor
  exists, and under autocast no float32 copy of one either.
- **logits** (:mod:`~hf_dpo.logprobs.from_logits`): the model's logits from the batch's first scored position on
  (``logits_to_keep``), scored a chunk at a time in float32 by a hand-written backward.

Which path runs, and why, is logged once per model class.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.batch import ScoredBatch, ScoredTokens
from hf_dpo.batch.attention import checkpoints_activations, is_reading, reading_shared_prompt
from hf_dpo.batch.choice import dense_mask_support
from hf_dpo.logprobs.attention_check import attention_function_matches
from hf_dpo.logprobs.chunks import STAT_NAMES
from hf_dpo.logprobs.from_hidden import ProjectedTokenLogProbs, captured_output, decoder_and_head, head_matches
from hf_dpo.logprobs.from_logits import kept_logit_scores
from hf_dpo.models.wrappers import base_model

logger = logging.getLogger(__name__)

_LOGGED: set[str] = set()
_HEAD_MISMATCH = "from logits: its logits are not lm_head(hidden states) (checked on its first batch)"
_HEAD_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # lm_head -> are the logits lm_head(h)?


@dataclass
class CompletionScores:
    """Per-sequence sums over completion tokens, each of shape ``[N]``.

    ``logps`` (float32, differentiable) weights each token by the batch's token weights when it has them (1
    otherwise); ``num_tokens`` counts the scored tokens; ``stats`` (no grad, float32 ``[N, 4]``, or ``None``) sums
    the per-token statistics named in ``STAT_NAMES``.
    """

    logps: torch.Tensor
    num_tokens: torch.Tensor
    stats: torch.Tensor | None = None

    def stat(self, name: str) -> torch.Tensor:
        return self.stats[:, STAT_NAMES.index(name)]


def summed(
    tokens: ScoredTokens,
    token_logps: torch.Tensor,
    token_stats: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    with_stats: bool = True,
) -> CompletionScores:
    """Per-token values of ``tokens`` summed per sequence (``token_weights``: `[M]`, on the log-probs only)."""
    if token_weights is not None:
        token_logps = token_logps * token_weights.to(token_logps.dtype)
    stats = tokens.per_sequence(token_stats) if with_stats else None
    return CompletionScores(tokens.per_sequence(token_logps), tokens.counts(), stats)


def supports_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the transformers model inside ``model`` (maybe DDP- and PEFT-wrapped) takes ``logits_to_keep``."""
    return "logits_to_keep" in inspect.signature(base_model(model).forward).parameters


def _log_path(model: torch.nn.Module, path: str) -> None:
    message = f"{type(model).__name__}: completion log-probs {path}"
    if message not in _LOGGED:
        _LOGGED.add(message)
        logger.info(message)


def forward(model: torch.nn.Module, batch: ScoredBatch, **forward_kwargs: Any) -> Any:
    """``model``'s forward over ``batch``: a shared-prompt batch through the attention function where the model reads
    it exactly, else through the dense mask where that is exact (the log says why), else a clear error."""
    inputs = batch.model_inputs(model)
    reading = "hf_dpo_shared_prompt" in inputs
    if reading:
        why_not = None
        if torch.is_grad_enabled() and checkpoints_activations(model) and not is_reading(model):
            why_not = "gradient checkpointing recomputes the layers after this call (DPOTrainer's step holds it)"
        elif not attention_function_matches(model, batch):
            why_not = "its layers read the attention function differently from separate rows (first-batch check)"
        if why_not is not None:
            dense_problem = dense_mask_support(model)
            if dense_problem is not None:
                raise RuntimeError(
                    f"{type(base_model(model)).__name__} cannot read this shared-prompt batch: {why_not}, and the "
                    f"dense mask cannot stand in ({dense_problem}); use the padded layout (prefix_sharing=False)"
                )
            _log_path(base_model(model), f"read through the dense 4D mask: {why_not}")
            inputs, reading = batch.model_inputs(model, dense=True), False
    with reading_shared_prompt(model) if reading else contextlib.nullcontext():
        return model(**inputs, use_cache=False, **forward_kwargs)


def _hidden_state_scores(
    model: torch.nn.Module, base: torch.nn.Module, batch: ScoredBatch, with_stats: bool, forward_kwargs: dict
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, Any, str]:
    """``((token_logps, token_stats), outputs, path)`` from the final hidden states, or ``(None, None, why not)``."""
    found = decoder_and_head(base)
    if isinstance(found, str):
        return None, None, f"from logits: {found}"
    decoder, head = found
    if _HEAD_CHECKED.get(head) is False:
        return None, None, _HEAD_MISMATCH
    with captured_output(decoder) as captured:
        outputs = forward(model, batch, logits_to_keep=1, **forward_kwargs)
    hidden, dtype = captured[-1] if captured else (None, None)
    if hidden is None or hidden.shape[:2] != batch.input_ids.shape:
        return None, None, "from logits: the decoder's output is not its last hidden states"
    if head not in _HEAD_CHECKED:
        _HEAD_CHECKED[head] = head_matches(head, hidden[:, -1].detach(), outputs.logits[:, -1], dtype)
        if not _HEAD_CHECKED[head]:
            return None, None, _HEAD_MISMATCH
    rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.tokens.source)
    scored = ProjectedTokenLogProbs.apply(rows, head.weight, head.bias, batch.tokens.labels, with_stats, dtype)
    return scored, outputs, "from the final hidden states (no logits tensor)"


def _logit_scores(
    model: torch.nn.Module, base: torch.nn.Module, batch: ScoredBatch, with_stats: bool, forward_kwargs: dict
) -> tuple[tuple[torch.Tensor, torch.Tensor], Any]:
    """``((token_logps, token_stats), outputs)`` from the model's logits of the scored columns on."""
    tokens, width = batch.tokens, batch.input_ids.shape[1]
    if supports_logits_to_keep(base) and tokens.source.numel() > 0:
        forward_kwargs = {**forward_kwargs, "logits_to_keep": width - tokens.first_column}
    outputs = forward(model, batch, **forward_kwargs)
    return kept_logit_scores(outputs.logits, tokens, width, with_stats), outputs


def sequence_scores(
    model: torch.nn.Module,
    batch: ScoredBatch,
    *,
    hidden_states: bool = True,
    with_stats: bool = True,
    **forward_kwargs: Any,
) -> tuple[CompletionScores, Any]:
    """One forward pass of ``model`` over ``batch``: per-sequence :class:`CompletionScores` (in the padded layout's
    sequence order) and the model's outputs (for ``aux_loss``).

    Args:
        model: a causal LM (maybe DDP-, DeepSpeed- or PEFT-wrapped).
        batch: the step's batch, in any layout.
        hidden_states: score from the final hidden states where the model allows it (``False``: always from its
            logits; the run's ``fused_lm_head``).
        with_stats: also sum the per-token statistics of ``STAT_NAMES``.
        forward_kwargs: passed to the model (``output_router_logits``).
    """
    base = base_model(model)
    scored, outputs, path = None, None, "from logits (switched off)"
    if hidden_states:
        scored, outputs, path = _hidden_state_scores(model, base, batch, with_stats, forward_kwargs)
    _log_path(base, path)
    if scored is None:
        scored, outputs = _logit_scores(model, base, batch, with_stats, forward_kwargs)
    return summed(batch.tokens, *scored, batch.token_weights, with_stats), outputs


def sequence_logps(model: torch.nn.Module, batch: ScoredBatch, hidden_states: bool = True) -> torch.Tensor:
    """The summed completion log-probs of every sequence of ``batch`` (float32 ``[N]``), without statistics."""
    scores, _ = sequence_scores(model, batch, hidden_states=hidden_states, with_stats=False)
    return scores.logps
