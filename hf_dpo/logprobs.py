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
"""

from __future__ import annotations

import inspect

import torch

IGNORE_INDEX = -100
# Rows of vocabulary-wide float32 scores held at once: 2**24 floats is 64 MiB (128 rows of a 128k vocabulary).
_CHUNK_ELEMENTS = 2**24


class _TokenLogProbs(torch.autograd.Function):
    """``log softmax(logits[row])[target]`` for selected rows of a ``[R, V]`` logits matrix, float32 out."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        chunk = max(1, _CHUNK_ELEMENTS // logits.shape[-1])
        token_logps = torch.empty(rows.numel(), dtype=torch.float32, device=logits.device)
        logsumexp = torch.empty_like(token_logps)
        for start in range(0, rows.numel(), chunk):
            end = start + chunk
            scores = logits.index_select(0, rows[start:end]).float()
            logsumexp[start:end] = torch.logsumexp(scores, dim=-1)
            target_scores = scores.gather(1, targets[start:end, None]).squeeze(1)
            token_logps[start:end] = target_scores - logsumexp[start:end]
        ctx.save_for_backward(logits, rows, targets, logsumexp)
        return token_logps

    @staticmethod
    def backward(ctx, grad_token_logps: torch.Tensor) -> tuple[torch.Tensor, None, None]:
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
        return grad_logits, None, None


def token_logps_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs from logits aligned with the last ``K`` positions of ``labels``.

    Args:
        logits (`torch.Tensor` of shape `[N, K, V]`): the model's scores for positions ``T-K .. T-1`` (``K == T``
            for full logits), in any floating dtype.
        labels (`torch.Tensor` of shape `[N, T]`): token ids, ``-100`` where a token is not scored.

    Returns:
        `(logps, num_tokens)`: float32 `[N]` sums of ``log p(labels[n, t] | labels[n, :t])`` over scored tokens,
        and the number of scored tokens per sequence (long `[N]`).

    >>> logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    >>> token_logps_from_logits(logits, torch.tensor([[0, -100, 1]]))[0].exp()  # only label 1 at t=2 is scored
    tensor([0.7500])
    """
    num_seqs, kept, vocab = logits.shape
    # Position T-K+j of the logits predicts label T-K+j+1; the last kept position predicts nothing.
    shifted_labels = labels[:, labels.shape[1] - kept + 1 :]
    mask = shifted_labels != IGNORE_INDEX
    seq_index, pos_index = mask.nonzero(as_tuple=True)
    rows = seq_index * kept + pos_index
    targets = shifted_labels[seq_index, pos_index]
    token_logps = _TokenLogProbs.apply(logits.reshape(num_seqs * kept, vocab), rows, targets)
    logps = torch.zeros(num_seqs, dtype=torch.float32, device=logits.device).index_add(0, seq_index, token_logps)
    return logps, mask.sum(-1)


def supports_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the transformers model inside ``model`` (maybe DDP- and PEFT-wrapped) takes ``logits_to_keep``."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(model, "get_base_model"):  # PeftModel forwards keyword arguments to its base model
        model = model.get_base_model()
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def sequence_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    use_logits_to_keep: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of ``model`` and the summed completion log-probs of each sequence (see module doc).

    Args:
        model: a causal LM returning ``.logits``.
        input_ids, attention_mask, labels (`torch.Tensor` of shape `[N, T]`): right-padded batch; ``labels`` is
            ``-100`` on prompt and padding.
        use_logits_to_keep: skip the logits of positions before the batch's first completion token; ``None``
            asks the model's forward signature.

    Returns:
        `(logps, num_tokens)`, float32 and long, each of shape `[N]`.
    """
    if use_logits_to_keep is None:
        use_logits_to_keep = supports_logits_to_keep(model)
    forward_kwargs = {}
    if use_logits_to_keep:
        scored = labels != IGNORE_INDEX
        first_scored = scored.float().argmax(dim=1)[scored.any(dim=1)]
        if first_scored.numel() > 0:
            # The first completion token is predicted from the position before it.
            forward_kwargs["logits_to_keep"] = labels.shape[1] - max(int(first_scored.min()) - 1, 0)
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **forward_kwargs)
    return token_logps_from_logits(outputs.logits, labels)
