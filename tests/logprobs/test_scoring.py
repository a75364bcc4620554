"""hf_dpo.logprobs: the chunked, hand-differentiated log-probs equal the plain log_softmax + gather, from logits and
from the final hidden states."""

import pytest
import torch
from tiny import build_model, build_tokenizer
from torch.testing import assert_close

from hf_dpo.batch import ScoredBatch
from hf_dpo.batch.scored_tokens import ld_token_weights, padded_tokens
from hf_dpo.logprobs import chunks, sequence_logps, sequence_scores, supports_logits_to_keep
from hf_dpo.logprobs.from_logits import kept_logit_scores
from hf_dpo.logprobs.scoring import summed


def _scores(logits, labels, with_stats=False, token_weights=None):
    """Per-sequence scores of ``logits`` (`[R, K, V]`) for the padded ``labels`` (`[R, T]`, weights likewise)."""
    tokens = padded_tokens(labels)
    if token_weights is not None:
        token_weights = token_weights.reshape(-1)[tokens.target]
    return summed(tokens, *kept_logit_scores(logits, tokens, labels.shape[1], with_stats), token_weights, with_stats)


def _naive(logits, labels):
    kept = logits.shape[1]
    shifted = labels[:, labels.shape[1] - kept + 1 :]
    mask = shifted != -100
    token_logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(2, shifted.clamp(min=0)[..., None]).squeeze(2)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def _batch(seed=0, vocab=11):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 6, vocab, generator=generator)
    labels = torch.randint(0, vocab, (3, 6), generator=generator)
    labels[0, :2] = -100  # prompt
    labels[1, :4] = -100
    labels[1, 5:] = -100  # padding
    labels[2, :] = -100  # nothing to score
    return logits, labels


def test_hand_worked_two_token_sequence():
    """Vocabulary of 2; position 0 scores label 1 with p = 0.25, position 1 scores label 0 with p = 0.9:
    log 0.25 + log 0.9 = -1.4916549."""
    logits = torch.log(torch.tensor([[[0.75, 0.25], [0.9, 0.1], [0.5, 0.5]]]))
    scores = _scores(logits, torch.tensor([[-100, 1, 0]]))
    assert_close(scores.logps, torch.tensor([-1.4916549]))
    assert scores.num_tokens.tolist() == [2]


@pytest.mark.parametrize("chunk_elements", [2**26, 11, 25])  # one chunk; one row per chunk; two rows per chunk
def test_values_and_gradients_match_naive(monkeypatch, chunk_elements):
    monkeypatch.setattr(chunks, "CHUNK_ELEMENTS", chunk_elements)
    logits, labels = _batch()
    ours_input = logits.clone().requires_grad_(True)
    naive_input = logits.clone().requires_grad_(True)
    scores = _scores(ours_input, labels)
    naive, naive_count = _naive(naive_input, labels)
    assert_close(scores.logps, naive)
    assert scores.logps[2] == 0 and scores.num_tokens.tolist() == naive_count.tolist() == [4, 1, 0]
    weights = torch.tensor([1.0, -2.0, 3.0])
    (scores.logps * weights).sum().backward()
    (naive * weights).sum().backward()
    assert_close(ours_input.grad, naive_input.grad)


def test_bfloat16_logits_give_float32_logps_and_bfloat16_grads():
    logits, labels = _batch()
    low = logits.to(torch.bfloat16).requires_grad_(True)
    logps = _scores(low, labels).logps
    assert logps.dtype == torch.float32
    reference, _ = _naive(low.detach().float(), labels)
    assert_close(logps, reference)  # upcast before the softmax: exact up to fp32 rounding
    logps.sum().backward()
    assert low.grad.dtype == torch.bfloat16


def test_hidden_states_and_kept_logits_give_the_logps_of_full_logits():
    tokenizer = build_tokenizer()
    model = build_model(tokenizer).eval()
    input_ids = torch.randint(5, len(tokenizer), (4, 9), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[3, 7:] = 0
    labels = input_ids.clone()
    labels[:, :4] = -100
    labels[1, :6] = -100
    labels[3, 7:] = -100
    batch = ScoredBatch.from_collated({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
    with torch.no_grad():
        kept = sequence_logps(model, batch)  # from the hidden states
        full, _ = sequence_scores(model, batch, hidden_states=False)  # from logits_to_keep logits
        naive, _ = _naive(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
    assert_close(kept, full.logps)
    assert_close(full.logps, naive)
    assert full.num_tokens.tolist() == batch.tokens.counts().tolist() == [5, 3, 5, 3]
    assert batch.tokens.first_column == 3  # the logits path keeps the logits from column 3 on
    assert supports_logits_to_keep(model)


@pytest.mark.parametrize("chunk_elements", [2**26, 11])
def test_statistics_match_their_definitions(monkeypatch, chunk_elements):
    monkeypatch.setattr(chunks, "CHUNK_ELEMENTS", chunk_elements)
    logits, labels = _batch()
    scores = _scores(logits, labels, with_stats=True)
    shifted = labels[:, 1:]
    mask = (shifted != -100).float()
    log_p = torch.log_softmax(logits[:, :-1], -1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    top1 = (logits[:, :-1].argmax(-1) == shifted).float()
    target_log_p = log_p.gather(2, shifted.clamp(min=0)[..., None]).squeeze(2)
    aligned = target_log_p - torch.log((log_p.exp() ** 2).sum(-1))
    assert_close(scores.stat("entropy"), (entropy * mask).sum(-1))
    assert_close(scores.stat("mean_logits"), (logits[:, :-1].mean(-1) * mask).sum(-1))
    assert_close(scores.stat("top1"), (top1 * mask).sum(-1))
    assert_close(scores.stat("aligned_logps"), (aligned * mask).sum(-1))
    assert_close(scores.logps, _naive(logits, labels)[0])


def test_token_weights_scale_values_and_gradients():
    logits, labels = _batch()
    weights = torch.rand(labels.shape, generator=torch.Generator().manual_seed(3))
    ours_input, naive_input = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = _scores(ours_input, labels, token_weights=weights).logps
    log_p = torch.log_softmax(naive_input[:, :-1], -1)
    shifted = labels[:, 1:]
    target_log_p = log_p.gather(2, shifted.clamp(min=0)[..., None]).squeeze(2)
    naive = (target_log_p * (shifted != -100) * weights[:, 1:]).sum(-1)
    assert_close(ours, naive)
    ours.sum().backward()
    naive.sum().backward()
    assert_close(ours_input.grad, naive_input.grad)


def test_ld_weights_split_each_pair_at_its_shorter_completion():
    """Pair 0: chosen 3 tokens, rejected 1 -> shared 1; pair 1: chosen 1, rejected 2 -> shared 1."""
    labels = torch.tensor(
        [
            [-100, 5, 6, 7],  # chosen 0
            [-100, -100, 4, -100],  # chosen 1
            [-100, 8, -100, -100],  # rejected 0
            [-100, -100, 9, 9],  # rejected 1
        ]
    )
    weights = ld_token_weights(padded_tokens(labels), 0.25)  # one per scored token, in the batch's flat order
    assert weights.tolist() == [1.0, 0.25, 0.25, 1.0, 1.0, 1.0, 0.25]
