"""The shared-prompt attention function (hf_dpo/batch/attention.py) reads every family of the zoo exactly: the
shared layout's log-probs, statistics and gradients equal the padded layout's logits path (fp32, 1e-5), sliding
windows, soft-capping and mixture-of-experts routers included, and it builds no L x L mask."""

import logging

import pytest
import torch
from architectures import FAMILIES, MOE, build
from torch.testing import assert_close

import hf_dpo.batch.attention as attention_module
from hf_dpo.batch import DPODataCollator, ScoredBatch, SharedPromptCollator, shared_prompt_support
from hf_dpo.batch.attention import reading_shared_prompt
from hf_dpo.logprobs import sequence_scores

# (prompt, chosen, rejected) lengths: windows of 5 and 6 bite; an empty prompt; a one-token completion
SHAPES = [(7, 4, 6), (3, 8, 2), (0, 3, 3), (5, 1, 7)]
VOCAB = 300


def _rows(shapes=SHAPES, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(5, VOCAB, (n,), generator=generator).tolist()

    return [
        {"prompt_input_ids": ids(p), "chosen_input_ids": ids(c), "rejected_input_ids": ids(r)} for p, c, r in shapes
    ]


def _scores(model, columns, hidden_states, **forward_kwargs):
    model.zero_grad()
    batch = ScoredBatch.from_collated(columns)
    scores, outputs = sequence_scores(model, batch, hidden_states=hidden_states, **forward_kwargs)
    loss = (scores.logps * torch.linspace(0.5, 1.5, scores.logps.numel())).sum()
    if forward_kwargs:
        loss = loss + outputs.aux_loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return scores, grads, outputs


@pytest.fixture
def calls(monkeypatch):
    """How often the attention function ran a group's spans (it must run, not be bypassed)."""
    seen = []
    real = attention_module.shared_prompt_attention

    def counting(*args, **kwargs):
        seen.append(kwargs.get("hf_dpo_shared_prompt") is not None)
        return real(*args, **kwargs)

    monkeypatch.setitem(attention_module.ALL_ATTENTION_FUNCTIONS._global_mapping, attention_module.ATTENTION, counting)
    return seen


@pytest.mark.parametrize("family", [family for family in FAMILIES if family not in MOE])
@pytest.mark.parametrize("layout", ["shared", "padding_free"])
def test_every_family_reads_the_shared_prompt_exactly(family, layout, calls):
    model = build(family, VOCAB)
    assert shared_prompt_support(model) is None
    rows = _rows()
    expected_scores, expected_grads, _ = _scores(model, DPODataCollator(0)(rows), hidden_states=False)
    collator = SharedPromptCollator(0, padding_free=layout == "padding_free")
    scores, grads, _ = _scores(model, collator(rows), hidden_states=False)
    assert calls and all(calls)  # every layer attended through the function, with the batch's spans
    assert_close(scores.logps, expected_scores.logps, atol=1e-5, rtol=1e-5)
    assert_close(scores.stats, expected_scores.stats, atol=1e-5, rtol=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert_close(grad, expected_grads[name], atol=1e-5, rtol=1e-5, msg=name)
    assert model.config._attn_implementation != attention_module.ATTENTION  # selected for the pass only


@pytest.mark.parametrize("family", MOE)
def test_mixture_of_experts_keep_the_shared_prompt_and_their_router_loss_counts_the_real_tokens(family):
    """The layout's tokens: each prompt once. The router's loss over them equals the model's own loss on a padded
    batch of exactly those tokens (a row per group, the same 2D mask)."""
    model = build(family, VOCAB)
    assert shared_prompt_support(model, router=True) is None
    rows = _rows()
    shared = SharedPromptCollator(0)(rows)
    scores, grads, outputs = _scores(model, shared, hidden_states=True, output_router_logits=True)
    padded_scores, _, _ = _scores(model, DPODataCollator(0)(rows), hidden_states=False, output_router_logits=True)
    assert_close(scores.logps, padded_scores.logps, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the same tokens as plain causal rows: group = prompt + chosen + rejected, one row each
        groups = [row["prompt_input_ids"] + row["chosen_input_ids"] + row["rejected_input_ids"] for row in rows]
        plain = model(
            input_ids=shared["input_ids"], attention_mask=shared["attention_mask"], output_router_logits=True
        )
    assert len(groups) == shared["input_ids"].shape[0]
    # the router sees each token's own hidden state; the loss's token set and weighting are what must agree: the
    # layout's mask is the collator's 2D mask of the real tokens, as in the plain forward
    assert outputs.aux_loss.item() == pytest.approx(plain.aux_loss.item(), rel=0.2)
    assert torch.isfinite(outputs.aux_loss) and any("gate" in name or "router" in name for name in grads)


def test_no_square_mask_is_built(monkeypatch):
    model = build("mistral", VOCAB)
    shapes = []
    real = torch.nn.functional.scaled_dot_product_attention

    def watching(query, key, value, attn_mask=None, **kwargs):
        shapes.append(None if attn_mask is None else tuple(attn_mask.shape))
        return real(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", watching)
    batch = ScoredBatch.from_collated(SharedPromptCollator(0)(_rows()))
    sequence_scores(model, batch)
    width = batch.input_ids.shape[1]
    masks = [shape for shape in shapes if shape is not None]
    assert masks and all(shape[-1] < width for shape in masks)  # only a continuation's [L_c, P + L_c] block
    assert None in shapes  # the prompt + first completion runs on sdpa's causal path


def test_gradient_checkpointing_reads_the_function_inside_a_held_block_and_the_mask_outside(caplog):
    model = build("llama", VOCAB)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    rows = _rows()
    expected = _scores(model, DPODataCollator(0)(rows), hidden_states=False)
    with reading_shared_prompt(model):  # as DPOTrainer.training_step holds it, through backward
        held = _scores(model, SharedPromptCollator(0)(rows), hidden_states=True)
    with caplog.at_level(logging.INFO, logger="hf_dpo.logprobs.scoring"):
        unheld = _scores(model, SharedPromptCollator(0)(rows), hidden_states=True)
    assert "gradient checkpointing recomputes the layers" in caplog.text
    for got in (held, unheld):
        assert_close(got[0].logps, expected[0].logps, atol=1e-5, rtol=1e-5)
        for name, grad in got[1].items():
            assert_close(grad, expected[1][name], atol=1e-5, rtol=1e-5, msg=name)


def test_a_model_that_bypasses_the_interface_is_caught_on_its_first_batch(monkeypatch, caplog):
    model = build("qwen2", VOCAB)
    real = attention_module.shared_prompt_attention

    def plain_causal(module, query, key, value, attention_mask, hf_dpo_shared_prompt=None, **kwargs):
        if hf_dpo_shared_prompt is None:
            return real(module, query, key, value, attention_mask, **kwargs)
        # what a model with its own attention code would do: full causal attention over the row
        return attention_module.ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, None, is_causal=True)

    monkeypatch.setitem(
        attention_module.ALL_ATTENTION_FUNCTIONS._global_mapping, attention_module.ATTENTION, plain_causal
    )
    rows = _rows()
    with caplog.at_level(logging.WARNING, logger="hf_dpo.logprobs.attention_check"):
        got, _, _ = _scores(model, SharedPromptCollator(0)(rows), hidden_states=True)
    expected, _, _ = _scores(model, DPODataCollator(0)(rows), hidden_states=False)
    assert "do not read the shared-prompt attention function as they read separate rows" in caplog.text
    assert_close(got.logps, expected.logps, atol=1e-5, rtol=1e-5)  # the dense mask read it right


def test_flash_attention_varlen_packs_every_run_with_its_prompt(monkeypatch):
    """No flash-attn here: a reference varlen kernel in plain torch (causal, bottom-right aligned, as FlashAttention
    is when a key run is longer than its query run) stands in for flash_attn_varlen_func."""

    def reference_varlen(module, query, key, value, mask, cu_seq_lens_q=None, cu_seq_lens_k=None, **kwargs):
        if cu_seq_lens_q is None:  # padded rows (the first-batch check): causal, with the rows' 2D padding mask
            allowed = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool).tril() & mask.bool()[:, None, None]
            k, v = (x.repeat_interleave(query.shape[1] // x.shape[1], dim=1) for x in (key, value))
            run = torch.nn.functional.scaled_dot_product_attention(
                query, k, v, attn_mask=allowed, scale=kwargs["scaling"]
            )
            return run.transpose(1, 2), None
        assert mask is None and kwargs["is_causal"] and query.shape[0] == 1
        out = []
        for i in range(cu_seq_lens_q.numel() - 1):
            q = query[:, :, cu_seq_lens_q[i] : cu_seq_lens_q[i + 1]]
            k = key[:, :, cu_seq_lens_k[i] : cu_seq_lens_k[i + 1]]
            v = value[:, :, cu_seq_lens_k[i] : cu_seq_lens_k[i + 1]]
            allowed = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril(k.shape[2] - q.shape[2])
            k, v = (x.repeat_interleave(q.shape[1] // x.shape[1], dim=1) for x in (k, v))
            run = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=kwargs["scaling"])
            out.append(run.transpose(1, 2))
        return torch.cat(out, dim=1), None

    monkeypatch.setitem(
        attention_module.ALL_ATTENTION_FUNCTIONS._global_mapping, "flash_attention_2", reference_varlen
    )
    model = build("llama", VOCAB)
    rows = _rows()
    expected, expected_grads, _ = _scores(model, DPODataCollator(0)(rows), hidden_states=False)
    model.config._attn_implementation = "flash_attention_2"
    assert shared_prompt_support(model) is None
    for padding_free in (False, True):
        got, grads, _ = _scores(model, SharedPromptCollator(0, padding_free=padding_free)(rows), hidden_states=True)
        assert_close(got.logps, expected.logps, atol=1e-5, rtol=1e-5)
        for name, grad in grads.items():
            assert_close(grad, expected_grads[name], atol=1e-5, rtol=1e-5, msg=name)
