"""Every faster path equals the plain one: the shared-prompt layout (packed or not) and the hidden-state scoring
give the padded layout's logits-path log-probs, statistics and gradients (fp32, 1e-5)."""

import warnings

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import build_model, build_tokenizer, preference_rows
from torch.testing import assert_close

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import (
    DPODataCollator,
    ScoredBatch,
    SharedPromptCollator,
    UnpairedDataCollator,
    shared_prompt_support,
)
from hf_dpo.batch.dense_mask import attention_allowed
from hf_dpo.logprobs import sequence_scores
from hf_dpo.logprobs.from_hidden import decoder_and_head

# (prompt, chosen, rejected) lengths: mixed sizes, an empty prompt, a one-token completion
SHAPES = [(5, 3, 4), (2, 6, 1), (7, 2, 2), (0, 3, 3), (3, 1, 5)]
LAYOUTS = {
    "padded": lambda: DPODataCollator(0),
    "shared": lambda: SharedPromptCollator(0),
    "padding_free": lambda: SharedPromptCollator(0, padding_free=True),
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _rows(vocab, shapes=SHAPES, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(5, vocab, (n,), generator=generator).tolist()

    return [
        {"prompt_input_ids": ids(p), "chosen_input_ids": ids(c), "rejected_input_ids": ids(r)} for p, c, r in shapes
    ]


def _scores(model, columns, hidden_states, ld_alpha=None):
    model.zero_grad()
    scores, _ = sequence_scores(model, ScoredBatch.from_collated(columns, ld_alpha), hidden_states=hidden_states)
    (scores.logps * torch.linspace(0.5, 1.5, scores.logps.numel())).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return scores, grads


def _assert_same(scores, grads, expected_scores, expected_grads):
    assert_close(scores.logps.detach(), expected_scores.logps.detach(), atol=1e-5, rtol=1e-5)
    assert scores.num_tokens.tolist() == expected_scores.num_tokens.tolist()
    assert_close(scores.stats, expected_scores.stats, atol=1e-5, rtol=1e-5)
    assert grads.keys() == expected_grads.keys() and grads
    for name, grad in grads.items():
        assert_close(grad, expected_grads[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("hidden_states", [False, True], ids=["logits", "hidden_states"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_every_layout_and_path_equals_padded_logits(tokenizer, layout, hidden_states, attention, tied):
    model = build_model(tokenizer, tie_word_embeddings=tied)
    model.config._attn_implementation = attention
    rows = _rows(len(tokenizer))
    expected = _scores(model, DPODataCollator(0)(rows), hidden_states=False, ld_alpha=0.5)
    got = _scores(model, LAYOUTS[layout]()(rows), hidden_states, ld_alpha=0.5)
    _assert_same(*got, *expected)
    assert "lm_head.weight" in got[1] or tied  # a full fine-tune trains the head, tied or not
    assert expected[0].num_tokens.tolist() == [3, 6, 2, 2, 1, 4, 1, 2, 2, 5]  # no predecessor for the first token


def test_lora_policy_hidden_states_shared_prompt_equal_padded_logits(tokenizer):
    model = get_peft_model(build_model(tokenizer), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for module in model.modules():  # a nonzero B so the adapters change the outputs
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
    rows = _rows(len(tokenizer))
    expected = _scores(model, DPODataCollator(0)(rows), hidden_states=False)
    got = _scores(model, SharedPromptCollator(0)(rows), hidden_states=True)
    _assert_same(*got, *expected)
    assert all("lora_" in name for name in got[1])  # the frozen head gets no gradient


def test_unpaired_rows_with_kl_counterparts_share_their_prompt(tokenizer):
    model = build_model(tokenizer)
    pairs = _rows(len(tokenizer), shapes=[(4, 3, 2), (2, 5, 1), (3, 2, 2)])
    rows = [
        {
            "prompt_input_ids": pair["prompt_input_ids"],
            "completion_input_ids": pair["chosen_input_ids"],
            "label": i != 1,
        }
        for i, pair in enumerate(pairs)
    ]
    for with_kl in (True, False):
        padded = UnpairedDataCollator(0, with_kl=with_kl)(rows)
        shared = SharedPromptCollator(0, unpaired=True, with_kl=with_kl)(rows)
        assert shared["label"].tolist() == padded["label"].tolist() == [True, False, True]
        shared_batch, padded_batch = ScoredBatch.from_collated(shared), ScoredBatch.from_collated(padded)
        assert shared_batch.num_sequences == padded_batch.num_sequences == 3 * (1 + with_kl)
        assert shared_batch.input_tokens.tolist() == padded["attention_mask"].sum(1).tolist()
        _assert_same(*_scores(model, shared, True), *_scores(model, padded, False))


def test_attention_mask_shows_each_completion_its_prompt_only(tokenizer):
    batch = SharedPromptCollator(0, padding_free=True)(_rows(len(tokenizer), shapes=[(2, 2, 1), (1, 1, 2)]))
    allowed = attention_allowed(batch["group_ids"], batch["segment_ids"])[0, 0].int()
    # row: P P C C R | P C R R ; positions restart for the rejected part
    assert batch["segment_ids"].tolist() == [[0, 0, 1, 1, 2, 0, 1, 2, 2]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2, 0, 1, 1, 2]]
    assert allowed[4].tolist() == [1, 1, 0, 0, 1, 0, 0, 0, 0]  # rejected: its prompt and itself
    assert allowed[8].tolist() == [0, 0, 0, 0, 0, 1, 0, 1, 1]  # the second pair sees nothing of the first
    assert ScoredBatch.from_collated(batch).input_tokens.tolist() == [4, 2, 3, 3]  # prompt + completion each


def test_lm_head_output_keeps_one_position_on_the_hidden_state_path(tokenizer):
    model = build_model(tokenizer)
    widths = []
    model.lm_head.register_forward_hook(lambda module, args, output: widths.append(output.shape[1]))
    batch = ScoredBatch.from_collated(SharedPromptCollator(0)(_rows(len(tokenizer))))
    sequence_scores(model, batch)
    sequence_scores(model, batch, hidden_states=False)
    assert widths[-2] == 1 and widths[-1] > 1  # no [R, T, V] logits on the hidden-state path


def test_a_model_whose_logits_are_not_its_head_keeps_the_logits_path(tokenizer, caplog):
    model = build_model(tokenizer)

    def scaled(module, args, kwargs, output):  # a model that rescales its logits after lm_head
        output.logits = output.logits * 0.5
        return output

    model.register_forward_hook(scaled, with_kwargs=True)
    batch = ScoredBatch.from_collated(DPODataCollator(0)(_rows(len(tokenizer))))
    with caplog.at_level("INFO", logger="hf_dpo.logprobs.scoring"):
        got, _ = sequence_scores(model, batch)
    expected, _ = sequence_scores(model, batch, hidden_states=False)
    assert_close(got.logps, expected.logps)
    assert "not lm_head(hidden states)" in caplog.text
    soft_capped = build_model(tokenizer)
    soft_capped.config.final_logit_softcapping = 30.0
    assert "soft-capped" in decoder_and_head(soft_capped)


def test_bf16_autocast_hidden_states_match_the_logits_path(tokenizer):
    model = build_model(tokenizer)
    batch = ScoredBatch.from_collated(SharedPromptCollator(0)(_rows(len(tokenizer))))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = sequence_scores(model, batch)
        expected, _ = sequence_scores(model, batch, hidden_states=False)
    assert_close(got.logps, expected.logps, atol=1e-4, rtol=1e-4)  # same bf16 projection, float32 softmax


def test_which_models_read_the_shared_prompt_and_through_what(tokenizer):
    model = build_model(tokenizer)
    assert shared_prompt_support(model) is None
    model.config._attn_implementation = "flash_attention_2"  # the attention function's varlen path
    assert shared_prompt_support(model) is None
    windowed = build_model(tokenizer)
    windowed.config.layer_types = ["sliding_attention", "full_attention"]
    assert shared_prompt_support(windowed) is None
    flex = _kernel(build_model(tokenizer), "flex_attention")
    assert "'flex_attention' has no shared-prompt path" in shared_prompt_support(flex)
    linear = build_model(tokenizer)
    linear.config.layer_types = ["linear_attention", "full_attention"]
    assert "linear_attention" in shared_prompt_support(linear)


def _kernel(model, name):
    model.config._attn_implementation = name
    return model


def _trainer(tmp_path, tokenizer, model=None, rows=16, **overrides):
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "max_steps": 3,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        "ref_logps_cache": False,
    }
    args = DPOTrainingArguments(**{**values, **overrides})
    rows = [{**row, "prompt": row["prompt"] * (1 + i % 3)} for i, row in enumerate(preference_rows(rows))]
    return DPOTrainer(model or build_model(tokenizer), args=args, train_dataset=rows, processing_class=tokenizer)


@pytest.mark.parametrize("precompute", [False, True], ids=["on_the_fly", "precomputed"])
def test_training_with_every_fast_path_equals_the_plain_path(tmp_path, tokenizer, precompute):
    # SGD: an update linear in the gradient. AdamW's update is near lr·sign(g) where a gradient is near zero, so
    # float rounding (1e-7 in gradients, tested above) becomes lr-sized steps on some embedding rows.
    sgd = {"optim": "sgd", "learning_rate": 1.0}
    plain = _trainer(tmp_path / "plain", tokenizer, prefix_sharing=False, fused_lm_head=False, **sgd)
    fast = _trainer(tmp_path / "fast", tokenizer, precompute_ref_log_probs=precompute, **sgd)
    packed = _trainer(tmp_path / "packed", tokenizer, precompute_ref_log_probs=precompute, padding_free=True, **sgd)
    assert isinstance(plain.data_collator, DPODataCollator)
    assert isinstance(fast.data_collator, SharedPromptCollator) and not fast.data_collator.padding_free
    assert packed.data_collator.padding_free
    for trainer in (plain, fast, packed):
        trainer.train()

    def logged(trainer, name):
        return [entry[name] for entry in trainer.state.log_history if name in entry]

    for name in ("loss", "rewards/margins", "logps/chosen", "entropy", "num_tokens", "mean_token_accuracy"):
        assert logged(fast, name) == pytest.approx(logged(plain, name), abs=1e-5), name
        assert logged(packed, name) == pytest.approx(logged(plain, name), abs=1e-5), name
    for (name, a), (_, b) in zip(plain.model.named_parameters(), fast.model.named_parameters()):
        assert_close(b, a, atol=1e-5, rtol=1e-5, msg=name)


def test_padding_free_without_a_mask_the_model_reads_warns_and_pads(tmp_path, tokenizer):
    model = build_model(tokenizer)
    model.config._attn_implementation = "flex_attention"
    with pytest.warns(UserWarning, match="padding_free=True needs the shared-prompt layout"):
        trainer = _trainer(tmp_path, tokenizer, model=model, padding_free=True)
    assert isinstance(trainer.data_collator, DPODataCollator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = _trainer(tmp_path, tokenizer, model=model)  # the default layout falls back without a warning
    assert isinstance(trainer.data_collator, DPODataCollator)


def test_group_by_length_batches_rows_of_similar_length(tmp_path, tokenizer):
    overrides = {"train_sampling_strategy": "group_by_length", "remove_unused_columns": True, "max_steps": 2}
    trainer = _trainer(tmp_path, tokenizer, rows=64, **overrides)  # megabatches of 16 rows sorted by length
    lengths = trainer.train_dataset["length"]
    prompt, chosen, rejected = (
        trainer.train_dataset[f"{part}_input_ids"][0] for part in ("prompt", "chosen", "rejected")
    )
    assert lengths[0] == len(prompt) + len(chosen) + len(rejected)
    grouped = [batch["length"].tolist() for batch in trainer.get_train_dataloader()]
    in_order = [lengths[start : start + 4] for start in range(0, len(lengths), 4)]  # three prompt sizes, mixed

    def spread(batches):  # the padding a batch needs grows with it
        return sum(max(batch) - min(batch) for batch in batches)

    assert sorted(n for batch in grouped for n in batch) == sorted(lengths) and spread(grouped) < spread(in_order) / 2
    trainer.train()
