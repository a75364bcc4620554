"""The log-softmax of a vocabulary-wide score matrix, a chunk of rows at a time, in float32: the token's log-prob,
the statistics TRL logs, and the gradient, without ever holding more than one chunk of float32 scores (64 MiB)."""

from __future__ import annotations

from typing import Any

import torch

# Rows of vocabulary-wide float32 scores held at once: 2**24 floats is 64 MiB (128 rows of a 128k vocabulary).
CHUNK_ELEMENTS = 2**24


STAT_NAMES = ("entropy", "mean_logits", "top1", "aligned_logps")


def chunk_rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // vocab)


def token_stats(
    scores: torch.Tensor, targets: torch.Tensor, logsumexp: torch.Tensor, token_logps: torch.Tensor
) -> torch.Tensor:
    """``[c, 4]`` for a chunk of float32 scores ``[c, V]``: entropy ``-Σ p log p = lse - Σ p z``, the mean logit,
    1.0 where the target is the (first) argmax, and ``log p(target) - log Σ p²`` (WPO's aligned log-prob)."""
    probs = torch.exp(scores - logsumexp[:, None])
    entropy = logsumexp - (probs * scores).sum(-1)
    top1 = (scores.argmax(-1) == targets).float()
    log_sum_sq_probs = torch.logsumexp(2.0 * scores, dim=-1) - 2.0 * logsumexp
    return torch.stack([entropy, scores.mean(-1), top1, token_logps - log_sum_sq_probs], dim=1)


def score_chunks(
    scores_of: Any, targets: torch.Tensor, vocab: int, with_stats: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(token_logps, logsumexp, stats)`` over the rows of ``targets``, ``scores_of(start, end)`` giving the
    float32 scores ``[c, V]`` of rows ``start:end``."""
    count = targets.numel()
    token_logps = torch.empty(count, dtype=torch.float32, device=targets.device)
    logsumexp = torch.empty_like(token_logps)
    stats = torch.empty((count if with_stats else 0, len(STAT_NAMES)), device=targets.device)
    step = chunk_rows(vocab)
    for start in range(0, count, step):
        end = min(start + step, count)
        scores = scores_of(start, end)
        logsumexp[start:end] = torch.logsumexp(scores, dim=-1)
        token_logps[start:end] = scores.gather(1, targets[start:end, None]).squeeze(1) - logsumexp[start:end]
        if with_stats:
            stats[start:end] = token_stats(scores, targets[start:end], logsumexp[start:end], token_logps[start:end])
    return token_logps, logsumexp, stats


def score_grad(
    scores: torch.Tensor, targets: torch.Tensor, logsumexp: torch.Tensor, grad: torch.Tensor
) -> torch.Tensor:
    """d/dz of ``grad · (z[target] - logsumexp(z))`` for a chunk: ``grad · (onehot(target) - softmax(z))``."""
    softmax = torch.exp(scores - logsumexp[:, None])
    return softmax.mul_(-grad[:, None]).scatter_add_(1, targets[:, None], grad[:, None])
