"""DPOTrainer end to end on tiny Llama models built in code."""

import gc
import logging
import math

import pytest
import torch
from peft import LoraConfig
from tiny import build_model, build_tokenizer, preference_rows
from torch.testing import assert_close
from transformers import LlamaForCausalLM, Trainer, TrainerCallback

from hf_dpo import DPODataCollator, DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import ScoredBatch
from hf_dpo.logprobs import sequence_logps
from hf_dpo.reference.kinds import DisabledAdapterReference, FrozenModelReference, NoReference, PrecomputedReference

METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logps/ref_margin",
    "logps/mean_logratio",
)


def _args(tmp_path, **overrides):
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-2,
        "max_steps": 12,
        "logging_steps": 4,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return DPOTrainingArguments(**{**values, **overrides})


def _trainer(tmp_path, tokenizer, model=None, **overrides):
    kwargs = {
        key: overrides.pop(key)
        for key in ("ref_model", "peft_config", "callbacks", "compute_metrics")
        if key in overrides
    }
    return DPOTrainer(
        model=model if model is not None else build_model(tokenizer),
        args=_args(tmp_path, **overrides),
        train_dataset=preference_rows(32),
        eval_dataset=preference_rows(8),
        processing_class=tokenizer,
        **kwargs,
    )


def _live_models():
    gc.collect()
    return {id(obj) for obj in gc.get_objects() if type(obj) is LlamaForCausalLM}


def _params(model):
    return {name: value.detach().clone() for name, value in model.named_parameters()}


def test_step_zero_is_log2_then_loss_falls_and_accuracy_rises(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, max_steps=24)
    before = trainer.evaluate()
    assert before["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert (
        before["eval_rewards/margins"] == 0
        and before["eval_logps/mean_logratio"] == 0
        and before["eval_rewards/accuracies"] == 0
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 6 and all(name in logs[0] for name in METRICS)
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    assert logs[-1]["rewards/accuracies"] > logs[0]["rewards/accuracies"]
    after = trainer.evaluate()
    assert after["eval_loss"] < 0.3 and after["eval_rewards/accuracies"] == 1.0
    assert after["eval_rewards/margins"] > 0 and all(f"eval_{name}" in after for name in METRICS)


def test_frozen_copy_reference_is_unchanged_by_training(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, max_steps=4)
    assert isinstance(trainer.reference, FrozenModelReference)
    reference = trainer.reference.model
    assert reference is not trainer.model and not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    reference_before, policy_before = _params(reference), _params(trainer.model)
    trainer.train()
    for name, value in reference.named_parameters():
        assert torch.equal(value, reference_before[name]), name
    assert any(not torch.equal(v, policy_before[n]) for n, v in trainer.model.named_parameters())


def test_peft_reference_is_the_base_model_without_a_second_copy(tmp_path, tokenizer):
    alive_before = _live_models()
    model = build_model(tokenizer)
    base_weights = _params(model)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    trainer = _trainer(tmp_path, tokenizer, model=model, peft_config=lora, max_steps=6, learning_rate=5e-2)
    assert isinstance(trainer.reference, DisabledAdapterReference)
    del model
    assert len(_live_models() - alive_before) == 1  # only the policy's base model
    trainer.train()

    base = build_model(tokenizer)
    base.load_state_dict({name.replace(".base_layer", ""): value for name, value in base_weights.items()})
    base.eval()
    batch = DPODataCollator(tokenizer.pad_token_id)([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        batch = ScoredBatch.from_collated(batch)
        ref_chosen, ref_rejected = trainer.reference(trainer.model, batch).chunk(2)
        base_logps = sequence_logps(base, batch)
        policy_logps = sequence_logps(trainer.model, batch)
    assert_close(torch.cat([ref_chosen, ref_rejected]), base_logps)
    assert not torch.allclose(policy_logps, base_logps)  # the adapters moved; the reference did not
    assert trainer.model.training  # the reference pass restored train mode


def test_gradient_accumulation_2x2_equals_1x4(tmp_path, tokenizer):
    def one_step(batch_size, accumulation):
        trainer = _trainer(
            tmp_path / f"{batch_size}x{accumulation}",
            tokenizer,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            optim="sgd",
            learning_rate=0.5,
            lr_scheduler_type="constant",
            logging_steps=1,
        )
        trainer.train()
        return _params(trainer.model), trainer.state.log_history[0]["loss"]

    (single, single_loss), (accumulated, accumulated_loss) = one_step(4, 1), one_step(2, 2)
    assert any(not torch.equal(single[name], build_model(tokenizer).state_dict()[name]) for name in single)
    for name in single:
        assert_close(accumulated[name], single[name], atol=1e-5, rtol=0)
    assert accumulated_loss == pytest.approx(single_loss, abs=1e-5)


def test_save_and_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path, tokenizer):
    straight = _trainer(tmp_path / "run", tokenizer, max_steps=6, save_strategy="steps", save_steps=3)
    straight.train()
    checkpoint = tmp_path / "run" / "checkpoint-3"
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "model.safetensors").is_file()

    resumed = _trainer(tmp_path / "run", tokenizer, max_steps=6, save_strategy="steps", save_steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6
    for name, value in straight.model.named_parameters():
        assert_close(dict(resumed.model.named_parameters())[name], value, atol=1e-6, rtol=0)


def test_evaluate_with_compute_metrics_gets_rewards_as_predictions(tmp_path, tokenizer):
    seen = {}

    def compute_metrics(prediction):
        seen["shape"] = prediction.predictions.shape
        return {"chosen_wins": float((prediction.predictions[:, 0] > prediction.predictions[:, 1]).mean())}

    trainer = _trainer(tmp_path, tokenizer, compute_metrics=compute_metrics)
    metrics = trainer.evaluate()
    assert seen["shape"] == (8, 2)
    assert metrics["eval_chosen_wins"] == 0.0 and "eval_rewards/margins" in metrics
    metrics = trainer.evaluate(metric_key_prefix="test")
    assert "test_rewards/accuracies" in metrics


def test_callbacks_see_dpo_metrics_and_evaluation_during_training(tmp_path, tokenizer):
    seen_logs = []

    class Recorder(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen_logs.append(dict(logs))

    trainer = _trainer(tmp_path, tokenizer, callbacks=[Recorder()], max_steps=4, eval_strategy="steps", eval_steps=2)
    trainer.train()
    assert any("rewards/margins" in log for log in seen_logs)
    evaluations = [log for log in seen_logs if "eval_loss" in log]
    assert len(evaluations) == 2 and all("eval_rewards/accuracies" in log for log in evaluations)
    assert not any("rewards/margins" in log for log in evaluations)  # train metrics stay in train logs


def test_reference_free_builds_and_runs_no_reference(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, reference_free=True, max_steps=4)
    assert isinstance(trainer.reference, NoReference)
    trainer.train()
    log = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert log["logps/ref_margin"] == 0.0


def test_model_and_reference_by_path_and_missing_pad_token(tmp_path, tokenizer, caplog):
    build_model(tokenizer).save_pretrained(tmp_path / "model")
    no_pad = build_tokenizer(pad=False)
    no_pad.save_pretrained(tmp_path / "model")
    with caplog.at_level(logging.WARNING, logger="hf_dpo.trainer.trainer"):
        trainer = DPOTrainer(
            model=str(tmp_path / "model"),
            ref_model=str(tmp_path / "model"),
            args=_args(tmp_path / "out", max_steps=2, model_init_kwargs={"dtype": "float32"}),
            train_dataset=preference_rows(8),
        )
    assert "no pad token; using its EOS token '</s>'" in caplog.text
    assert trainer.processing_class.pad_token == "</s>"
    trainer.train()


def test_remove_unused_columns_keeps_our_columns(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, remove_unused_columns=True, max_steps=2)
    trainer.train()
    assert trainer.state.global_step == 2


def test_model_card_describes_the_run(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, max_steps=4)
    trainer.train()
    trainer.create_model_card(dataset="my/prefs")
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\n") and "- dpo" in card and "my/prefs" in card
    assert "| beta | 0.1 |" in card and "| reference | a frozen copy of the starting model |" in card
    assert "| train | 32 | 32 | 0 | 0 |" in card and "rewards/accuracies" in card


def test_disable_dropout_zeroes_dropout_in_policy_adapters_and_reference(tmp_path, tokenizer):
    lora = LoraConfig(r=4, lora_dropout=0.2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_trainer = _trainer(tmp_path, tokenizer, model=build_model(tokenizer, attention_dropout=0.3), peft_config=lora)
    dropouts = [m for m in peft_trainer.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)
    copy_trainer = _trainer(tmp_path, tokenizer, model=build_model(tokenizer, attention_dropout=0.3))
    for model in (peft_trainer.model, copy_trainer.model, copy_trainer.reference.model):
        attention = [m for m in model.modules() if hasattr(m, "attention_dropout")]
        assert attention and all(m.attention_dropout == 0.0 for m in attention)
    kept = _trainer(tmp_path, tokenizer, model=build_model(tokenizer, attention_dropout=0.3), disable_dropout=False)
    assert any(getattr(m, "attention_dropout", 0) == 0.3 for m in kept.model.modules())


def test_precomputed_reference_equals_on_the_fly_and_frees_the_copy(tmp_path, tokenizer):
    alive_before = _live_models()
    on_the_fly = _trainer(tmp_path / "fly", tokenizer, max_steps=5, logging_steps=1)
    precomputed = _trainer(tmp_path / "pre", tokenizer, max_steps=5, logging_steps=1, precompute_ref_log_probs=True)
    assert isinstance(precomputed.reference, PrecomputedReference)
    # on_the_fly's policy and frozen copy, precomputed's policy: its copy is gone
    assert len(_live_models() - alive_before) == 3

    batch = DPODataCollator(tokenizer.pad_token_id)([precomputed.train_dataset[i] for i in range(8)])
    expected_chosen, expected_rejected = on_the_fly.reference(
        on_the_fly.model, ScoredBatch.from_collated(batch)
    ).chunk(2)
    assert_close(batch["ref_chosen_logps"], expected_chosen, atol=1e-6, rtol=0)
    assert_close(batch["ref_rejected_logps"], expected_rejected, atol=1e-6, rtol=0)
    assert "ref_chosen_logps" in precomputed.eval_dataset.column_names

    on_the_fly.train()
    precomputed.train()
    fly_losses = [entry["loss"] for entry in on_the_fly.state.log_history if "loss" in entry]
    pre_losses = [entry["loss"] for entry in precomputed.state.log_history if "loss" in entry]
    assert len(fly_losses) == 5
    assert pre_losses == pytest.approx(fly_losses, abs=1e-6)


@pytest.mark.parametrize("use_peft", [False, True], ids=["full", "lora"])
def test_activation_checkpointing_trains_full_and_lora_models(tmp_path, tokenizer, use_peft):
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM") if use_peft else None
    trainer = _trainer(
        tmp_path, tokenizer, peft_config=lora, activation_checkpointing=True, max_steps=3, logging_steps=1
    )
    assert trainer.evaluate()["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    before = _params(trainer.model)
    trainer.train()
    base = trainer.model.get_base_model() if use_peft else trainer.model
    assert base.is_activation_checkpointing
    assert any(not torch.equal(v, before[n]) for n, v in trainer.model.named_parameters() if v.requires_grad)


@pytest.mark.parametrize("setup", ["copy", "lora", "lora_precomputed"])
def test_bf16_autocast_step_zero_is_log2_for_every_reference(tmp_path, tokenizer, setup):
    """The reference must score under the policy's autocast: otherwise bf16 rounding alone ranks pairs at step 0."""
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM") if setup != "copy" else None
    trainer = _trainer(
        tmp_path, tokenizer, peft_config=lora, bf16=True, precompute_ref_log_probs=setup == "lora_precomputed"
    )
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["eval_rewards/margins"] == 0 and metrics["eval_rewards/accuracies"] == 0
    trainer.train()
    assert trainer.state.log_history[0]["loss"] < math.log(2)


def test_evaluate_and_predict_accept_raw_datasets(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer)
    metrics = trainer.evaluate(eval_dataset=preference_rows(4))
    assert metrics["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert trainer.predict(preference_rows(4)).metrics["test_rewards/accuracies"] == 0


def test_a_second_train_call_starts_with_an_empty_metric_window(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, max_steps=3, logging_steps=2)  # step 3 is not a logging step
    trainer.train()
    closing = trainer.state.log_history[-1]  # the run's summary carries step 3's metrics, as TRL's does
    assert "train_loss" in closing and "rewards/margins" in closing and "train" not in trainer._windows._totals
    leftover = torch.ones(len(trainer._windows.spec.columns) + 1)
    trainer._windows._totals["train"] = 1e6 * leftover  # would dominate any log it leaked into
    trainer.train()
    first_log = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert abs(first_log["rewards/margins"]) < 100


def test_lora_initialisation_is_seeded_so_runs_repeat(tmp_path, tokenizer):
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    first = _trainer(tmp_path / "a", tokenizer, peft_config=lora, seed=7)
    torch.manual_seed(12345)  # whatever happened to the global RNG in between
    second = _trainer(tmp_path / "b", tokenizer, peft_config=lora, seed=7)
    for (name, a), (_, b) in zip(first.model.named_parameters(), second.model.named_parameters()):
        assert torch.equal(a, b), name


def test_a_model_without_a_name_needs_a_tokenizer(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="pass processing_class"):
        DPOTrainer(build_model(tokenizer), args=_args(tmp_path), train_dataset=preference_rows(4))


def test_precomputed_reference_logps_reach_the_loss_in_float32_whatever_the_input_cast(
    tmp_path, tokenizer, monkeypatch
):
    """Under DeepSpeed, Trainer._prepare_input casts every floating tensor of a batch to the engine's dtype; here
    that cast is reproduced for bf16. Summed log-probs of about -40 would move by up to 0.125 in bf16."""
    trainer = _trainer(tmp_path, tokenizer, precompute_ref_log_probs=True, ref_logps_cache=False)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    expected = {name: batch[name].clone() for name in ("ref_chosen_logps", "ref_rejected_logps")}
    assert not torch.equal(expected["ref_chosen_logps"].bfloat16().float(), expected["ref_chosen_logps"])

    def deepspeed_like_cast(self, data):
        if isinstance(data, dict):
            return type(data)({key: deepspeed_like_cast(self, value) for key, value in data.items()})
        if isinstance(data, torch.Tensor) and data.is_floating_point():
            return data.to(self.args.device, torch.bfloat16)
        return data.to(self.args.device) if isinstance(data, torch.Tensor) else data

    monkeypatch.setattr(Trainer, "_prepare_input", deepspeed_like_cast)
    prepared = trainer._prepare_inputs(dict(batch))
    for name, value in expected.items():
        assert prepared[name].dtype == torch.float32 and torch.equal(prepared[name], value), name


def test_bco_pair_running_mean_survives_resume(tmp_path, tokenizer):
    """Before the fix the resumed run restarted δ from the two steps after the checkpoint (count 32, not 64)."""

    def run(resume=None):
        overrides = {"loss_type": "bco_pair", "bco_pair_running_mean": True, "max_steps": 4}
        overrides |= {"save_strategy": "steps", "save_steps": 2}
        trainer = _trainer(tmp_path, tokenizer, **overrides)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run()
    resumed = run(resume=str(tmp_path / "checkpoint-2"))
    assert straight.reward_mean.state_dict()["bco_rewards"][1] == 4 * 4 * 2  # 4 steps x 4 pairs x 2 completions
    assert_close(resumed.reward_mean.totals, straight.reward_mean.totals, atol=1e-9, rtol=0)
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert_close(b, a, atol=1e-6, rtol=0), name


def test_auto_find_batch_size_halves_whole_pairs_after_an_out_of_memory_error(tmp_path, tokenizer, monkeypatch):
    overrides = {"auto_find_batch_size": True, "per_device_train_batch_size": 8, "max_steps": 3, "logging_steps": 1}
    trainer = _trainer(tmp_path, tokenizer, **overrides)
    real_compute_loss, rows_seen = DPOTrainer.compute_loss, []

    def out_of_memory_once(self, model, inputs, *args, **kwargs):
        rows_seen.append(ScoredBatch.from_collated(inputs).num_sequences)
        if len(rows_seen) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(DPOTrainer, "compute_loss", out_of_memory_once)
    trainer.train()
    pairs = trainer._train_batch_size  # accelerate shrinks the batch (by 10% in 1.15) after the error
    assert pairs < 8 and rows_seen[0] == 16 and set(rows_seen[1:]) == {2 * pairs}  # whole pairs: [chosen; rejected]
    assert trainer.state.global_step == 3
    logged = [entry for entry in trainer.state.log_history if "rewards/accuracies" in entry]
    assert logged and all(math.isfinite(entry["loss"]) for entry in logged)
