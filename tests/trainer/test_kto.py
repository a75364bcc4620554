"""KTO in DPOTrainer: unpaired rows (or pairs unrolled), one forward over completions and KL counterparts, every
reference kind, precomputed and cached reference log-probs, and a held-out separation that improves."""

import math

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from tiny import build_model
from torch.testing import assert_close

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import ScoredBatch
from hf_dpo.batch.padded import UnpairedDataCollator
from hf_dpo.data.columns import KL_COMPLETION_COLUMN
from hf_dpo.data.unpaired import kl_partners, with_kl_completions

SUBJECTS = ["fox", "dog", "spider", "Paris", "France", "capital", "answer", "question"]


def thumbs(count=32, offset=0):
    """Unpaired feedback a tiny model learns: answers with 'yes good' are desirable, 'no bad' are not."""
    return [
        {
            "prompt": f"Question: is the {SUBJECTS[i % len(SUBJECTS)]} good {i + offset}?",
            "completion": " Answer: yes good" if (i // 2) % 2 == 0 else " Answer: no bad",
            "label": (i // 2) % 2 == 0,
        }
        for i in range(count)
    ]


def _args(tmp_path, **overrides):
    values = {
        "output_dir": str(tmp_path),
        "loss_type": "kto",
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 2e-2,
        "max_steps": 8,
        "logging_steps": 2,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return DPOTrainingArguments(**{**values, **overrides})


def _trainer(tmp_path, tokenizer, model=None, rows=None, eval_rows=None, **overrides):
    extra = {key: overrides.pop(key) for key in ("peft_config", "ref_model") if key in overrides}
    return DPOTrainer(
        model if model is not None else build_model(tokenizer),
        args=_args(tmp_path, **overrides),
        train_dataset=rows if rows is not None else thumbs(),
        eval_dataset=eval_rows,
        processing_class=tokenizer,
        **extra,
    )


def test_kl_counterparts_never_share_the_row_prompt(tokenizer):
    trainer = _trainer(
        "/tmp/unused", tokenizer, rows=[{**row, "prompt": "same"} if i < 2 else row for i, row in enumerate(thumbs(8))]
    )
    dataset = trainer.train_dataset
    prompts, kl = dataset["prompt_input_ids"], dataset[KL_COMPLETION_COLUMN]
    completions = dataset["completion_input_ids"]
    for index, partner in enumerate(kl_partners(prompts)):
        assert prompts[partner] != prompts[index] and kl[index] == completions[partner]
    assert with_kl_completions(dataset) is dataset  # fixed once


def test_one_forward_over_completions_and_their_counterparts(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer)
    calls = []
    trainer.model.register_forward_hook(lambda module, args, kwargs, output: calls.append(kwargs), with_kwargs=True)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.train()
    losses, values = trainer._step(trainer.model, batch)
    # the policy: 4 completions + 4 KL counterparts, one pass (each prompt read once: one row per prompt)
    assert ScoredBatch.from_collated(batch).num_sequences == 8 and losses.shape == (4,)
    assert calls[-1]["input_ids"].shape[0] == 4 and "hf_dpo_shared_prompt" in calls[-1]  # the attention function
    assert values["count/desirable"].sum() + values["count/undesirable"].sum() == 4


def test_at_step_zero_every_row_loses_one_half(tmp_path, tokenizer):
    metrics = _trainer(tmp_path, tokenizer).evaluate(eval_dataset=thumbs(8, offset=100))
    assert_close(metrics["eval_loss"], 0.5, atol=1e-6, rtol=0)
    assert metrics["eval_kl"] == 0 and metrics["eval_rewards/chosen"] == 0
    assert metrics["eval_rewards/accuracies"] == 0  # every reward is exactly at the reference point
    assert (metrics["eval_count/desirable"], metrics["eval_count/undesirable"]) == (4, 4)


def test_kto_learns_to_separate_held_out_desirable_from_undesirable(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, max_steps=16)
    before = trainer.evaluate(eval_dataset=thumbs(16, offset=100))
    trainer.train()
    after = trainer.evaluate(eval_dataset=thumbs(16, offset=100))
    assert before["eval_rewards/margins"] == 0 and after["eval_rewards/margins"] > 0.5, after
    assert after["eval_rewards/accuracies"] > 0.5
    assert after["eval_loss"] < before["eval_loss"]
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "eval_loss" not in entry]
    for name in ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected",
                 "count/desirable", "count/undesirable", "entropy", "logits/chosen", "num_tokens"):  # fmt: skip
        assert name in logs[-1], name


def test_pairs_are_unrolled_for_kto(tmp_path, tokenizer):
    from tiny import preference_rows

    trainer = _trainer(tmp_path, tokenizer, rows=preference_rows(8))
    assert len(trainer.train_dataset) == 16 and sum(trainer.train_dataset["label"]) == 8
    trainer.train()


def _lora():
    return LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


@pytest.mark.parametrize("reference", ["copy", "peft_disabled", "sft_adapter", "apo_zero_unpaired"])
def test_every_reference_kind_trains(tmp_path, tokenizer, reference):
    overrides = {}
    model = build_model(tokenizer)
    if reference == "peft_disabled":
        overrides["peft_config"] = _lora()
    elif reference == "sft_adapter":
        torch.manual_seed(1)
        model = get_peft_model(model, LoraConfig(**{**_lora().to_dict(), "init_lora_weights": False}))
    elif reference == "apo_zero_unpaired":
        overrides["loss_type"] = "apo_zero_unpaired"
    trainer = _trainer(tmp_path, tokenizer, model=model, **overrides)
    assert_close(trainer.evaluate(eval_dataset=thumbs(8, offset=100))["eval_loss"], 0.5, atol=1e-6, rtol=0)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    after = trainer.evaluate(eval_dataset=thumbs(8, offset=100))
    assert all(math.isfinite(loss) for loss in losses) and after["eval_loss"] < 0.5, (losses, after)
    assert after["eval_rewards/margins"] > 0


def test_precomputed_and_cached_reference_logps_equal_the_reference_on_the_fly(tmp_path, tokenizer):
    cache = {"precompute_ref_log_probs": True, "ref_logps_cache_dir": str(tmp_path / "cache"), "max_steps": 4}
    on_the_fly = _trainer(tmp_path / "a", tokenizer, max_steps=4, train_sampling_strategy="sequential")
    precomputed = _trainer(tmp_path / "b", tokenizer, train_sampling_strategy="sequential", **cache)
    assert {"ref_logps", "ref_kl_logps"} <= set(precomputed.train_dataset.column_names)
    batch = precomputed.data_collator([precomputed.train_dataset[i] for i in range(4)])
    expected = on_the_fly.reference(on_the_fly.model, ScoredBatch.from_collated(batch))
    assert_close(torch.cat([batch["ref_logps"], batch["ref_kl_logps"]]), expected, atol=1e-5, rtol=1e-6)
    on_the_fly.train()
    precomputed.train()
    first = [entry["loss"] for entry in on_the_fly.state.log_history if "loss" in entry]
    second = [entry["loss"] for entry in precomputed.state.log_history if "loss" in entry]
    assert_close(torch.tensor(second), torch.tensor(first), atol=1e-5, rtol=0)
    cached = _trainer(tmp_path / "c", tokenizer, **cache)  # a second run reads the cache: same columns
    assert cached.train_dataset["ref_kl_logps"] == precomputed.train_dataset["ref_kl_logps"]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1


def test_unbalanced_data_gets_the_papers_advice(tmp_path, tokenizer, caplog):
    rows = [row for row in thumbs(40) if row["label"]][:15] + [row for row in thumbs(40) if not row["label"]][:5]
    with caplog.at_level("WARNING"):
        _trainer(tmp_path, tokenizer, rows=rows)
    assert "15 desirable and 5 undesirable" in caplog.text and "[1, 4/3]" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _trainer(tmp_path, tokenizer, rows=rows, undesirable_weight=3.0)
    assert "[1, 4/3]" not in caplog.text


def test_a_streamed_dataset_pairs_within_each_batch(tokenizer):
    collator = UnpairedDataCollator(pad_token_id=tokenizer.pad_token_id)
    rows = [
        {"prompt_input_ids": [1, 2], "completion_input_ids": [3], "label": True},
        {"prompt_input_ids": [1, 2], "completion_input_ids": [4], "label": False},
        {"prompt_input_ids": [5], "completion_input_ids": [6], "label": True},
    ]
    batch = collator(rows)
    # rows 0 and 1 share their prompt: both take row 2's completion; row 2 takes row 0's
    assert batch["input_ids"][3:, :3].tolist() == [[1, 2, 6], [1, 2, 6], [5, 3, tokenizer.pad_token_id]]
    assert Dataset  # a map-style Dataset instead gets fixed counterparts (with_kl_completions)


def test_the_model_card_of_a_kto_run_says_kto(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, max_steps=1)
    trainer.train()
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert (
        "Kahneman-Tversky Optimization (KTO)" in card and "ethayarajh2024kto" in card and "| loss_type | kto |" in card
    )
