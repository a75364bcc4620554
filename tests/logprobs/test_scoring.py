"""hf_dpo.logprobs.scoring: the chunked, hand-differentiated log-probs equal the plain log_softmax + gather."""

import pytest
import torch
from tiny import build_model, build_tokenizer
from torch.testing import assert_close

from hf_dpo.logprobs import from_hidden as output_head
from hf_dpo.logprobs import scoring as logprobs
from hf_dpo.logprobs.scoring import completion_scores, ld_token_weights, sequence_logps, token_logps_from_logits


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
    monkeypatch.setattr(output_head, "CHUNK_ELEMENTS", chunk_elements)
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
    with torch.no_grad():
        kept, kept_count = sequence_logps(model, input_ids, attention_mask, labels)  # from the hidden states
        with logprobs.scoring_path(hidden_states=False):  # from logits_to_keep logits
            full, full_count = sequence_logps(model, input_ids, attention_mask, labels)
        naive, _ = _naive(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
    assert_close(kept, full)
    assert_close(full, naive)
    assert kept_count.tolist() == full_count.tolist() == [5, 3, 5, 3]
    assert logprobs.supports_logits_to_keep(model)


@pytest.mark.parametrize("chunk_elements", [2**26, 11])
def test_statistics_match_their_definitions(monkeypatch, chunk_elements):
    monkeypatch.setattr(output_head, "CHUNK_ELEMENTS", chunk_elements)
    logits, labels = _batch()
    scores = completion_scores(logits, labels, with_stats=True)
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
    ours = completion_scores(ours_input, labels, token_weights=weights).logps
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
    weights = ld_token_weights(labels, 0.25)
    scored = labels != -100
    assert weights[scored].tolist() == [1.0, 0.25, 0.25, 1.0, 1.0, 1.0, 0.25]
