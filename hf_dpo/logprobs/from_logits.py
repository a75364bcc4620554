"""Token log-probs from a model's logits (the path for models whose head is more than a ``Linear``): a float32
log-softmax a chunk of rows at a time, with a hand-written backward that recomputes each chunk's softmax from the
saved logits, so autograd never keeps a float32 copy of them."""

from __future__ import annotations

import torch

from hf_dpo.batch import ScoredTokens
from hf_dpo.logprobs.chunks import chunk_rows, score_chunks, score_grad


class TokenLogProbs(torch.autograd.Function):
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
        step = chunk_rows(logits.shape[-1])
        grad_logits = torch.zeros_like(logits)
        for start in range(0, rows.numel(), step):
            end = start + step
            scores = logits.index_select(0, rows[start:end]).float()
            chunk_grad = score_grad(scores, targets[start:end], logsumexp[start:end], grad_token_logps[start:end])
            # index_add: in the shared-prompt layout a prompt's last position scores the first token of each completion
            grad_logits.index_add_(0, rows[start:end], chunk_grad.to(grad_logits.dtype))
        return grad_logits, None, None, None


def kept_logit_scores(
    logits: torch.Tensor, tokens: ScoredTokens, width: int, with_stats: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(token_logps [M], token_stats [M, 4])`` of ``tokens`` from logits kept for the last ``K`` of ``width``
    positions of each row (``logits``: `[R, K, V]`, any floating dtype; ``K == width`` for full logits)."""
    rows, kept, vocab = logits.shape
    # flat position r * L + c of the inputs -> row r * K + c - (L - K) of the kept logits
    source = tokens.source // width * kept + tokens.source % width - (width - kept)
    return TokenLogProbs.apply(logits.reshape(rows * kept, vocab), source, tokens.labels, with_stats)
