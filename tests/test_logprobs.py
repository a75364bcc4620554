"""hf_dpo.logprobs: the chunked, hand-differentiated log-probs equal the plain log_softmax + gather."""

import pytest
import torch
from tiny import build_model, build_tokenizer
from torch.testing import assert_close

from hf_dpo import logprobs
from hf_dpo.logprobs import sequence_logps, token_logps_from_logits


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
    logps, num_tokens = token_logps_from_logits(logits, torch.tensor([[-100, 1, 0]]))
    assert_close(logps, torch.tensor([-1.4916549]))
    assert num_tokens.tolist() == [2]


@pytest.mark.parametrize("chunk_elements", [2**26, 11, 25])  # one chunk; one row per chunk; two rows per chunk
def test_values_and_gradients_match_naive(monkeypatch, chunk_elements):
    monkeypatch.setattr(logprobs, "_CHUNK_ELEMENTS", chunk_elements)
    logits, labels = _batch()
    ours_input = logits.clone().requires_grad_(True)
    naive_input = logits.clone().requires_grad_(True)
    ours, ours_count = token_logps_from_logits(ours_input, labels)
    naive, naive_count = _naive(naive_input, labels)
    assert_close(ours, naive)
    assert ours[2] == 0 and ours_count.tolist() == naive_count.tolist() == [4, 1, 0]
    weights = torch.tensor([1.0, -2.0, 3.0])
    (ours * weights).sum().backward()
    (naive * weights).sum().backward()
    assert_close(ours_input.grad, naive_input.grad)


def test_bfloat16_logits_give_float32_logps_and_bfloat16_grads():
    logits, labels = _batch()
    low = logits.to(torch.bfloat16).requires_grad_(True)
    logps, _ = token_logps_from_logits(low, labels)
    assert logps.dtype == torch.float32
    reference, _ = _naive(low.detach().float(), labels)
    assert_close(logps, reference)  # upcast before the softmax: exact up to fp32 rounding
    logps.sum().backward()
    assert low.grad.dtype == torch.bfloat16


def test_logits_to_keep_gives_the_same_logps_as_full_logits():
    tokenizer = build_tokenizer()
    model = build_model(tokenizer).eval()
    input_ids = torch.randint(5, len(tokenizer), (4, 9), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[3, 7:] = 0
    labels = input_ids.clone()
    labels[:, :4] = -100
    labels[1, :6] = -100
    labels[3, 7:] = -100
    with torch.no_grad():
        kept, kept_count = sequence_logps(model, input_ids, attention_mask, labels, use_logits_to_keep=True)
        full, full_count = sequence_logps(model, input_ids, attention_mask, labels, use_logits_to_keep=False)
        naive, _ = _naive(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
    assert_close(kept, full)
    assert_close(full, naive)
    assert kept_count.tolist() == full_count.tolist() == [5, 3, 5, 3]
    assert logprobs.supports_logits_to_keep(model)
