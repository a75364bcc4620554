"""Per-sequence completion log-probabilities, computed without a float32 copy of the full logits.

A causal LM's logits at position ``t`` score the token at ``t + 1``. For a batch of ``N`` sequences with labels
(``-100`` on prompt and padding), :func:`sequence_logps` returns, per sequence, the sum of ``log p(label_t)`` over
its completion tokens and the number of those tokens.

Memory: a 7B model with a 128k vocabulary produces ``N x T x 128k`` logits; a float32 log-softmax of all of them
doubles that, and autograd keeps it for backward. Here the logits are

- cut to the positions from the earliest completion token on (``logits_to_keep``, when the model supports it),
- scored only on completion rows, a chunk at a time, upcast to float32 inside the chunk and thrown away,
- differentiated by a hand-written backward that recomputes the softmax per chunk from the saved logits.

So the extra memory is one chunk of float32 logits, whatever the model's dtype. (Under bf16/fp16 autocast,
accelerate's wrapper converts the model's outputs to float32 before they reach this module; the prompt
positions are still never computed.)

:func:`sequence_scores` also returns, from the same chunks and without gradients, the per-token statistics TRL
logs and WPO weighs by (entropy, mean logit, whether the label is the top-1 token, ``log p - log Σ p²``), and
can weight each completion token (LD-DPO's ``ld_alpha`` on the tokens past the shorter completion of a pair:
:func:`ld_token_weights`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100
# Rows of vocabulary-wide float32 scores held at once: 2**24 floats is 64 MiB (128 rows of a 128k vocabulary).
_CHUNK_ELEMENTS = 2**24


STAT_NAMES = ("entropy", "mean_logits", "top1", "aligned_logps")


class _TokenLogProbs(torch.autograd.Function):
    """``log softmax(logits[row])[target]`` for selected rows of a ``[R, V]`` logits matrix, float32 out; with
    ``with_stats``, also ``[R, 4]`` no-grad statistics per row (see ``STAT_NAMES``)."""

    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, with_stats: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = max(1, _CHUNK_ELEMENTS // logits.shape[-1])
        token_logps = torch.empty(rows.numel(), dtype=torch.float32, device=logits.device)
        logsumexp = torch.empty_like(token_logps)
        stats = torch.empty((rows.numel() if with_stats else 0, len(STAT_NAMES)), device=logits.device)
        for start in range(0, rows.numel(), chunk):
            end = start + chunk
            scores = logits.index_select(0, rows[start:end]).float()
            logsumexp[start:end] = torch.logsumexp(scores, dim=-1)
            target_scores = scores.gather(1, targets[start:end, None]).squeeze(1)
            token_logps[start:end] = target_scores - logsumexp[start:end]
            if with_stats:
                stats[start:end] = _token_stats(
                    scores, targets[start:end], logsumexp[start:end], token_logps[start:end]
                )
        ctx.save_for_backward(logits, rows, targets, logsumexp)
        ctx.mark_non_differentiable(stats)
        return token_logps, stats

    @staticmethod
    def backward(
        ctx, grad_token_logps: torch.Tensor, grad_stats: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        logits, rows, targets, logsumexp = ctx.saved_tensors
        chunk = max(1, _CHUNK_ELEMENTS // logits.shape[-1])
        grad_logits = torch.zeros_like(logits)
        for start in range(0, rows.numel(), chunk):
            end = start + chunk
            grad = grad_token_logps[start:end, None].float()
            # d/dz [z_target - logsumexp(z)] = onehot(target) - softmax(z)
            softmax = torch.exp(logits.index_select(0, rows[start:end]).float() - logsumexp[start:end, None])
            chunk_grad = softmax.mul_(-grad).scatter_add_(1, targets[start:end, None], grad)
            grad_logits.index_copy_(0, rows[start:end], chunk_grad.to(grad_logits.dtype))
        return grad_logits, None, None, None


def _token_stats(
    scores: torch.Tensor, targets: torch.Tensor, logsumexp: torch.Tensor, token_logps: torch.Tensor
) -> torch.Tensor:
    """``[c, 4]`` for a chunk of float32 scores ``[c, V]``: entropy ``-Σ p log p = lse - Σ p z``, the mean logit,
    1.0 where the target is the (first) argmax, and ``log p(target) - log Σ p²`` (WPO's aligned log-prob)."""
    probs = torch.exp(scores - logsumexp[:, None])
    entropy = logsumexp - (probs * scores).sum(-1)
    top1 = (scores.argmax(-1) == targets).float()
    log_sum_sq_probs = torch.logsumexp(2.0 * scores, dim=-1) - 2.0 * logsumexp
    return torch.stack([entropy, scores.mean(-1), top1, token_logps - log_sum_sq_probs], dim=1)


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


def completion_scores(
    logits: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    with_stats: bool = False,
) -> CompletionScores:
    """Summed completion log-probs (and statistics) from logits aligned with the last ``K`` positions of ``labels``.

    Args:
        logits (`torch.Tensor` of shape `[N, K, V]`): the model's scores for positions ``T-K .. T-1`` (``K == T``
            for full logits), in any floating dtype.
        labels (`torch.Tensor` of shape `[N, T]`): token ids, ``-100`` where a token is not scored.
        token_weights (`torch.Tensor` of shape `[N, T]`, *optional*): a weight per label position.
        with_stats: also sum the per-token statistics of ``STAT_NAMES``.
    """
    num_seqs, kept, vocab = logits.shape
    # Position T-K+j of the logits predicts label T-K+j+1; the last kept position predicts nothing.
    shifted_labels = labels[:, labels.shape[1] - kept + 1 :]
    mask = shifted_labels != IGNORE_INDEX
    seq_index, pos_index = mask.nonzero(as_tuple=True)
    rows = seq_index * kept + pos_index
    targets = shifted_labels[seq_index, pos_index]
    token_logps, token_stats = _TokenLogProbs.apply(logits.reshape(num_seqs * kept, vocab), rows, targets, with_stats)
    if token_weights is not None:
        token_logps = token_logps * token_weights[:, labels.shape[1] - kept + 1 :][seq_index, pos_index]
    logps = torch.zeros(num_seqs, dtype=torch.float32, device=logits.device).index_add(0, seq_index, token_logps)
    stats = None
    if with_stats:
        stats = torch.zeros((num_seqs, len(STAT_NAMES)), device=logits.device).index_add(0, seq_index, token_stats)
    return CompletionScores(logps, mask.sum(-1), stats)


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
    """LD-DPO's token weights for a ``[2B, T]`` batch of ``[chosen; rejected]`` labels: 1 on the first
    ``min(len_chosen, len_rejected)`` completion tokens of each pair, ``ld_alpha`` on the longer one's tail.

    >>> labels = torch.tensor([[-100, 5, 6, 7], [-100, 8, -100, -100]])  # chosen: 3 tokens, rejected: 1
    >>> ld_token_weights(labels, 0.5)
    tensor([[1.0000, 1.0000, 0.5000, 0.5000],
            [1.0000, 1.0000, 1.0000, 1.0000]])
    """
    scored = labels != IGNORE_INDEX
    position = scored.cumsum(dim=1)  # 1-based index among the completion tokens
    chosen_lengths, rejected_lengths = scored.sum(dim=1).chunk(2)
    shared = torch.minimum(chosen_lengths, rejected_lengths).repeat(2)
    weights = torch.where(position > shared[:, None], ld_alpha, 1.0)
    return weights.to(torch.float32)


def supports_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the transformers model inside ``model`` (maybe DDP- and PEFT-wrapped) takes ``logits_to_keep``."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(model, "get_base_model"):  # PeftModel forwards keyword arguments to its base model
        model = model.get_base_model()
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _completion_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    use_logits_to_keep: bool | None,
    **forward_kwargs: Any,
) -> Any:
    """The model's outputs, with logits only from the position before the batch's first completion token on."""
    if use_logits_to_keep is None:
        use_logits_to_keep = supports_logits_to_keep(model)
    if use_logits_to_keep:
        scored = labels != IGNORE_INDEX
        first_scored = scored.float().argmax(dim=1)[scored.any(dim=1)]
        if first_scored.numel() > 0:
            # The first completion token is predicted from the position before it.
            forward_kwargs["logits_to_keep"] = labels.shape[1] - max(int(first_scored.min()) - 1, 0)
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **forward_kwargs)


def sequence_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    use_logits_to_keep: bool | None = None,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of ``model`` and the summed completion log-probs of each sequence (see module doc).

    Args:
        model: a causal LM returning ``.logits``.
        input_ids, attention_mask, labels (`torch.Tensor` of shape `[N, T]`): right-padded batch; ``labels`` is
            ``-100`` on prompt and padding.
        use_logits_to_keep: skip the logits of positions before the batch's first completion token; ``None``
            asks the model's forward signature.
        token_weights (`torch.Tensor` of shape `[N, T]`, *optional*): a weight per label position.

    Returns:
        `(logps, num_tokens)`, float32 and long, each of shape `[N]`.
    """
    outputs = _completion_logits(model, input_ids, attention_mask, labels, use_logits_to_keep)
    scores = completion_scores(outputs.logits, labels, token_weights)
    return scores.logps, scores.num_tokens


def sequence_scores(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    token_weights: torch.Tensor | None = None,
    **forward_kwargs: Any,
) -> tuple[CompletionScores, Any]:
    """:func:`sequence_logps` with the per-token statistics, and the model's outputs (for ``aux_loss``)."""
    outputs = _completion_logits(
        model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"], None, **forward_kwargs
    )
    return completion_scores(outputs.logits, inputs["labels"], token_weights, with_stats=True), outputs
