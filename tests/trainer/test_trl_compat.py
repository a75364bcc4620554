"""A TRL 1.16 user swaps two class names and keeps everything else: fields, loss types, metrics, conventions."""

import dataclasses
import math
import warnings

import pytest
import torch
from datasets import Dataset, IterableDataset
from peft import LoraConfig
from tiny import build_model, preference_rows
from torch.testing import assert_close
from transformers import AutoModelForCausalLM, MixtralConfig, MixtralForCausalLM

from hf_dpo import DPODataCollator, DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import ScoredBatch, SharedPromptCollator
from hf_dpo.logprobs import sequence_scores
from hf_dpo.losses import LOSS_TYPES

# Written out from TRL 1.16's trl/trainer/dpo_config.py (not read from TRL at run time).
TRL_DPO_CONFIG_FIELDS = [
    "model_init_kwargs", "disable_dropout", "trust_remote_code", "dataset_num_proc", "pad_token", "max_length",
    "truncation_mode", "padding_free", "pad_to_multiple_of", "precompute_ref_log_probs", "precompute_ref_batch_size",
    "loss_type", "loss_weights", "ld_alpha", "f_divergence_type", "f_alpha_divergence_coef", "label_smoothing",
    "beta", "use_weighting", "discopop_tau", "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps",
    "activation_offloading", "router_aux_loss_coef",
]  # fmt: skip
TRL_LOSS_TYPES = [
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
]  # fmt: skip
TRL_METRICS = [
    "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
    "logits/chosen", "logits/rejected", "num_tokens", "mean_token_accuracy", "entropy",
]  # fmt: skip


def _args(tmp_path, **overrides):
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 1e-2,
        "max_steps": 3,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return DPOTrainingArguments(**{**values, **overrides})


def _trainer(tmp_path, tokenizer, model=None, rows=16, eval_rows=None, **overrides):
    extra = {key: overrides.pop(key) for key in ("peft_config", "ref_model") if key in overrides}
    return DPOTrainer(
        model if model is not None else build_model(tokenizer),
        args=_args(tmp_path, **overrides),
        train_dataset=preference_rows(rows),
        eval_dataset=preference_rows(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        **extra,
    )


def test_every_trl_field_and_loss_type_is_accepted(tmp_path):
    ours = {field.name for field in dataclasses.fields(DPOTrainingArguments)}
    assert not set(TRL_DPO_CONFIG_FIELDS) - ours
    assert not set(TRL_LOSS_TYPES) - set(LOSS_TYPES)
    for loss_type in TRL_LOSS_TYPES:
        assert DPOTrainingArguments(output_dir=str(tmp_path), loss_type=loss_type, report_to="none")
    mpo = DPOTrainingArguments(
        output_dir=str(tmp_path), loss_type=["sigmoid", "bco_pair", "sft"], loss_weights=[0.8, 0.2, 1.0]
    )
    assert mpo.loss_weights == [0.8, 0.2, 1.0]


@pytest.mark.parametrize("max_length", [32, 128, 256, 512])
def test_defaults_never_reject_a_valid_max_length(tmp_path, max_length):
    args = DPOTrainingArguments(output_dir=str(tmp_path), max_length=max_length, report_to="none")
    assert args.max_prompt_length is None and args.bf16 is False  # no GPU here: bf16 stays off, as it must on CPU
    assert DPOTrainingArguments(output_dir=str(tmp_path), pad_to_multiple_of="auto").pad_to_multiple_of is None


def test_trl_metric_names_are_logged_in_training_and_evaluation(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, eval_rows=4, eval_strategy="steps", eval_steps=4, max_steps=4)
    trainer.train()
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry and "eval_loss" not in entry]
    eval_log = next(entry for entry in trainer.state.log_history if "eval_loss" in entry)
    for name in TRL_METRICS:
        assert all(name in entry for entry in train_logs), name
        assert f"eval_{name}" in eval_log, name
    assert "aux_loss" not in train_logs[0]  # no router in a Llama
    # num_tokens counts every input token trained on, cumulatively: after 4 steps of 4 pairs, the 16 pairs once
    every_pair = DPODataCollator(tokenizer.pad_token_id)(list(trainer.train_dataset))  # TRL's count: padded rows
    assert train_logs[-1]["num_tokens"] == every_pair["attention_mask"].sum().item()
    assert [entry["num_tokens"] for entry in train_logs] == sorted(entry["num_tokens"] for entry in train_logs)
    assert 0 <= train_logs[-1]["mean_token_accuracy"] <= 1 and train_logs[-1]["entropy"] > 0


def test_token_metrics_are_the_token_weighted_means_of_the_batch(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, rows=4)
    metrics = trainer.evaluate(eval_dataset=preference_rows(4))
    batch = DPODataCollator(tokenizer.pad_token_id)(list(trainer._prepare_late(preference_rows(4), "check")))
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    log_p = torch.log_softmax(logits.float(), -1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    chosen_mask = mask[:4]
    assert_close(metrics["eval_entropy"], (entropy[mask]).mean().item(), atol=1e-5, rtol=0)
    assert_close(metrics["eval_logits/chosen"], logits[:4].mean(-1)[chosen_mask].mean().item(), atol=1e-5, rtol=0)
    top1 = logits[:4].argmax(-1) == labels[:4]
    assert_close(metrics["eval_mean_token_accuracy"], top1[chosen_mask].float().mean().item(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"ld_alpha": 0.5},
        {"use_weighting": True},
        {"f_divergence_type": "js_divergence"},
        {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.3},
        {"loss_type": "sigmoid_norm"},
        {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]},
        {"activation_offloading": True},
    ],
    ids=str,
)
def test_each_trl_option_trains(tmp_path, tokenizer, overrides):
    trainer = _trainer(tmp_path, tokenizer, max_steps=6, **overrides)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0], losses


def test_ld_alpha_weights_policy_and_reference_alike(tmp_path, tokenizer):
    """At step 0 the policy equals its reference, so the loss is log 2 with any ld_alpha; the log-probs shrink."""
    plain = _trainer(tmp_path / "plain", tokenizer, rows=8).evaluate(eval_dataset=preference_rows(8))
    weighted = _trainer(tmp_path / "ld", tokenizer, rows=8, ld_alpha=0.0).evaluate(eval_dataset=preference_rows(8))
    assert_close(weighted["eval_loss"], math.log(2), atol=1e-6, rtol=0)
    # chosen " Answer: yes good" and rejected " Answer: no bad" have the same token count here: ld_alpha changes
    # nothing but a tail; both sums can only lose weight
    assert weighted["eval_logps/chosen"] >= plain["eval_logps/chosen"] - 1e-6


def test_ld_alpha_is_part_of_the_reference_cache_key(tmp_path, tokenizer):
    cache = {"precompute_ref_log_probs": True, "ref_logps_cache_dir": str(tmp_path / "cache")}
    _trainer(tmp_path / "a", tokenizer, rows=8, **cache)
    _trainer(tmp_path / "b", tokenizer, rows=8, ld_alpha=0.5, **cache)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_f_divergence_is_refused_where_trl_refuses_it(tmp_path):
    with pytest.raises(ValueError, match="applies only to loss types"):
        DPOTrainingArguments(output_dir=str(tmp_path), loss_type="bco_pair", f_divergence_type="forward_kl")
    with pytest.raises(ValueError, match="use_weighting=True"):
        DPOTrainingArguments(output_dir=str(tmp_path), loss_type="aot_unpaired", use_weighting=True)


def test_tr_dpo_mixes_the_policy_into_a_frozen_copy(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, sync_ref_model=True, ref_model_sync_steps=2, ref_model_mixup_alpha=0.25)
    before = {name: p.detach().clone() for name, p in trainer.ref_model.named_parameters()}
    policy_at_2 = {}

    class Capture(__import__("transformers").TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 2:
                policy_at_2.update({name: p.detach().clone() for name, p in model.named_parameters()})

    trainer.callback_handler.callbacks.insert(0, Capture())  # before the sync callback sees step 2
    trainer.train()
    for name, value in trainer.ref_model.named_parameters():
        assert_close(value, 0.75 * before[name] + 0.25 * policy_at_2[name]), name


def test_tr_dpo_with_peft_moves_a_reference_adapter(tmp_path, tokenizer):
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = _trainer(
        tmp_path, tokenizer, peft_config=lora, sync_ref_model=True, ref_model_sync_steps=1, ref_model_mixup_alpha=1.0
    )
    assert trainer.reference.kind == "adapter"
    trainer.train()
    parameters = dict(trainer.model.named_parameters())
    reference = {name: value for name, value in parameters.items() if ".reference." in name}
    assert reference
    for name, value in reference.items():  # α = 1: after the last step the reference adapter is the trained one
        assert torch.equal(value, parameters[name.replace(".reference.", ".default.")]), name
    with pytest.raises(ValueError, match="precomputed reference log-probs"):
        _args(tmp_path, sync_ref_model=True, precompute_ref_log_probs=True)


def _tiny_mixtral(tokenizer):
    torch.manual_seed(0)
    config = MixtralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        router_aux_loss_coef=0.02,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    return MixtralForCausalLM(config)


def test_a_mixture_of_experts_trains_its_router_balance(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, model=_tiny_mixtral(tokenizer))
    assert trainer.loss_settings.router_aux_loss_coef == 0.02  # the config's own coefficient
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.train()
    losses, values = trainer._step(trainer.model, batch)
    assert isinstance(trainer.data_collator, SharedPromptCollator)  # the router's loss no longer forces padded rows
    with torch.no_grad():  # the router's loss over the layout's real tokens, as the model computes it
        _, outputs = sequence_scores(trainer.model, ScoredBatch.from_collated(batch), output_router_logits=True)
    aux = outputs.aux_loss
    assert_close(values["aux_loss"][0], aux.detach())
    off = _trainer(tmp_path / "off", tokenizer, model=_tiny_mixtral(tokenizer), router_aux_loss_coef=0.0)
    plain_losses, _ = off._step(off.model.train(), batch)
    assert_close(losses, plain_losses + 0.02 * aux.detach(), atol=1e-6, rtol=0)
    trainer.train()
    assert "aux_loss" in next(entry for entry in trainer.state.log_history if "loss" in entry)
    with pytest.raises(ValueError, match="no mixture-of-experts router"):
        _trainer(tmp_path / "dense", tokenizer, router_aux_loss_coef=0.1)


def test_trainer_conventions_tags_pad_token_padding_free_and_remote_code(tmp_path, tokenizer, monkeypatch):
    trainer = _trainer(tmp_path, tokenizer, rows=4)
    assert {"dpo", "hf_dpo"} <= set(trainer.model.model_tags)
    with pytest.warns(FutureWarning, match="pad_token is deprecated"):
        args = _args(tmp_path, pad_token="<pad>")
    assert DPOTrainer(build_model(tokenizer), args=args, train_dataset=preference_rows(4), processing_class=tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _trainer(tmp_path, tokenizer, rows=4, padding_free=True).data_collator.padding_free  # one row per batch
    calls = []
    monkeypatch.setattr(
        AutoModelForCausalLM, "from_pretrained", lambda name, **kwargs: calls.append(kwargs) or build_model(tokenizer)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DPOTrainer("some/model", args=_args(tmp_path, trust_remote_code=True), train_dataset=preference_rows(4),
                   processing_class=tokenizer, ref_model="some/reference")  # fmt: skip
    assert len(calls) == 2 and all(kwargs.get("trust_remote_code") is True for kwargs in calls)


def test_named_evaluation_sets_as_in_trainer(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, rows=8)
    metrics = trainer.evaluate(eval_dataset={"easy": preference_rows(4), "more": preference_rows(6)})
    assert {"eval_easy_loss", "eval_more_loss", "eval_easy_rewards/accuracies"} <= set(metrics)


def test_precomputed_reference_and_data_that_arrives_later(tmp_path, tokenizer):
    # a frozen copy: before training the policy is the reference, so a new set can be scored by it
    copy_run = _trainer(tmp_path / "copy", tokenizer, rows=8, precompute_ref_log_probs=True, ref_logps_cache=False)
    assert_close(copy_run.evaluate(eval_dataset=preference_rows(4))["eval_loss"], math.log(2), atol=1e-6, rtol=0)
    copy_run.train()
    with pytest.raises(ValueError, match="training moved the policy"):
        copy_run.evaluate(eval_dataset=preference_rows(4))
    # disabled adapters are always there: a new set is scored by the base model, before or after training
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_run = _trainer(tmp_path / "peft", tokenizer, rows=8, peft_config=lora, precompute_ref_log_probs=True)
    peft_run.train()
    trained = peft_run.evaluate(eval_dataset=preference_rows(4))
    assert trained["eval_loss"] < math.log(2)


def test_precompute_with_a_streamed_dataset_says_what_to_do(tmp_path, tokenizer):
    stream = IterableDataset.from_generator(lambda: iter(preference_rows(8)))
    with pytest.raises(ValueError, match=r"needs the train dataset in memory.*without streaming"):
        DPOTrainer(
            build_model(tokenizer),
            args=_args(tmp_path, precompute_ref_log_probs=True),
            train_dataset=stream,
            processing_class=tokenizer,
        )
    assert Dataset  # imported for the reader: a map-style Dataset is what precompute needs
