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


# ---- against TRL 1.16 itself: the same run under both trainers, tiny models in float32 ----------------------------


def _tiny_moe_path(tmp_path_factory, tokenizer, kind: str) -> str:
    """A tiny Qwen3-MoE or GPT-OSS model saved to disk (TRL builds its reference by reloading the policy's path)."""
    from transformers import GptOssConfig, GptOssForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    shared = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "num_experts_per_tok": 2,
        "max_position_embeddings": 128,
        "pad_token_id": tokenizer.pad_token_id,
        "router_aux_loss_coef": 0.05,  # large enough to move the losses visibly
    }
    if kind == "qwen3_moe":
        model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**shared, moe_intermediate_size=16, num_experts=4))
    else:
        model = GptOssForCausalLM(GptOssConfig(**shared, num_local_experts=4))
    path = tmp_path_factory.mktemp(kind)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module", params=["qwen3_moe", "gpt_oss"])
def tiny_moe_path(request, tmp_path_factory, tokenizer):
    return _tiny_moe_path(tmp_path_factory, tokenizer, request.param)


@pytest.fixture(scope="module")
def tiny_llama_path(tmp_path_factory, tokenizer):
    """A tiny Llama saved in bfloat16: TRL loads a model given by name in float32 unless told otherwise."""
    path = tmp_path_factory.mktemp("tiny-llama-bf16")
    build_model(tokenizer).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _trl_and_ours(tmp_path, model, tokenizer, rows, ref_model=None, ours=None, **overrides):
    """``{"trl": trainer, "ours": trainer}``, each built the same way (``model`` a path, ``ref_model`` a factory)
    and trained; TRL's defaults that a CPU cannot take (bf16) or that only cost time (checkpointing) are off;
    ``ours``: fields of our own, for our run only."""
    trl = pytest.importorskip("trl")
    values = {
        "per_device_train_batch_size": 4,
        "max_steps": 3,
        "logging_steps": 1,
        "learning_rate": 1e-2,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "disable_tqdm": True,
        "seed": 0,
    }
    runs = {}
    for name, config_class, trainer_class in (
        ("trl", trl.DPOConfig, trl.DPOTrainer),
        ("ours", DPOTrainingArguments, DPOTrainer),
    ):
        own = (ours or {}) if name == "ours" else {}
        args = config_class(output_dir=str(tmp_path / name), **{**values, **overrides, **own})
        trainer = trainer_class(
            model=model,
            ref_model=ref_model() if ref_model else None,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        trainer.train()
        runs[name] = trainer
    return runs


def _step_logs(trainer):
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def test_a_mixture_of_experts_trains_its_router_balance_as_trl_does(tmp_path, tokenizer, tiny_moe_path):
    """router_aux_loss_coef=None: the config's coefficient, aux_loss added and logged, the same numbers as TRL on
    TRL's layout (padded rows: each prompt's tokens routed twice; our default shared prompt routes them once)."""
    runs = _trl_and_ours(tmp_path, tiny_moe_path, tokenizer, preference_rows(12), ours={"prefix_sharing": False})
    assert runs["trl"].aux_loss_enabled and runs["ours"].aux_loss_enabled
    trl_logs, our_logs = _step_logs(runs["trl"]), _step_logs(runs["ours"])
    assert len(trl_logs) == len(our_logs) == 3
    for name in ("loss", "aux_loss", "rewards/chosen", "rewards/rejected", "logps/chosen"):
        assert_close([log[name] for log in our_logs], [log[name] for log in trl_logs], atol=1e-5, rtol=1e-5), name
    assert our_logs[-1]["loss"] < our_logs[0]["loss"]


def test_a_run_shorter_than_logging_steps_closes_with_trls_metric_names(tmp_path, tokenizer, tiny_moe_path):
    """TRL's own MoE and QLoRA tests read aux_loss and mean_token_accuracy from the last log entry, the run's closing
    summary: it carries the metrics of the steps since the last log."""
    runs = _trl_and_ours(
        tmp_path, tiny_moe_path, tokenizer, preference_rows(12), logging_steps=10, ours={"prefix_sharing": False}
    )
    trl_last, our_last = runs["trl"].state.log_history[-1], runs["ours"].state.log_history[-1]
    assert "train_loss" in our_last and not set(trl_last) - set(our_last)
    for name in ("aux_loss", "mean_token_accuracy", "rewards/chosen", "num_tokens"):
        assert_close(float(our_last[name]), float(trl_last[name]), atol=1e-5, rtol=1e-5), name


def test_the_mpo_mix_with_bco_pair_matches_trl(tmp_path, tokenizer, tiny_llama_path):
    """bco_pair with δ = 0 by default, as TRL 1.16 computes it: the MPO mix follows TRL's losses step by step."""
    mix = {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]}
    runs = _trl_and_ours(tmp_path, tiny_llama_path, tokenizer, preference_rows(12), **mix)
    trl_losses = [log["loss"] for log in _step_logs(runs["trl"])]
    our_losses = [log["loss"] for log in _step_logs(runs["ours"])]
    assert len(our_losses) == 3 and our_losses[-1] < our_losses[0]
    assert_close(our_losses, trl_losses, atol=1e-5, rtol=1e-5)


def test_an_explicit_reference_beside_a_named_policy_is_used_as_given(tmp_path, tokenizer, tiny_llama_path):
    """DPOTrainer(model="<path>", ref_model=<float32 model>): the policy loads in float32 (TRL's default dtype,
    although the checkpoint is bfloat16), the reference is the object given, and after training it still equals the
    policy's starting weights, as with TRL."""
    starting = {
        name: value.detach().clone()
        for name, value in AutoModelForCausalLM.from_pretrained(
            tiny_llama_path, dtype=torch.float32
        ).named_parameters()
    }
    given = {}

    def reference():
        given["model"] = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
        return given["model"]

    runs = {}
    for name, trainer in _trl_and_ours(tmp_path, tiny_llama_path, tokenizer, preference_rows(12), reference).items():
        runs[name] = trainer
        assert trainer.model.dtype == torch.float32, name
        for parameter_name, value in trainer.ref_model.named_parameters():
            torch.testing.assert_close(value, starting[parameter_name], atol=0, rtol=0)
    assert runs["ours"].ref_model is given["model"]  # the last factory call built ours
    trl_losses = [log["loss"] for log in _step_logs(runs["trl"])]
    assert_close([log["loss"] for log in _step_logs(runs["ours"])], trl_losses, atol=1e-5, rtol=1e-5)


# TRL defaults we keep apart, each documented in docs/from_trl.md: bf16 is off on a CPU (TRL's True needs
# use_cpu=True there), remove_unused_columns is False (our columns are kept either way); TRL stores a single loss_type
# as a one-element list, we keep what was given.
OWN_DEFAULTS = {"bf16", "remove_unused_columns", "loss_type"}


def test_every_default_of_trls_dpo_config_is_ours(tmp_path):
    """TRL 1.16's DPOConfig and ours built alike: every field has the same value (gradient_checkpointing=True,
    truncation_mode="keep_start", ...), but for OWN_DEFAULTS."""
    trl = pytest.importorskip("trl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TRL's config sets transformers' deprecated name
        theirs = trl.DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    ours = DPOTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    different = {
        field.name
        for field in dataclasses.fields(trl.DPOConfig)
        if getattr(ours, field.name) != getattr(theirs, field.name)
    }
    assert different == OWN_DEFAULTS
    assert (ours.gradient_checkpointing, ours.activation_checkpointing, ours.truncation_mode) == (
        True,
        True,
        "keep_start",
    )
    assert theirs.loss_type == [ours.loss_type]


def test_truncation_at_max_length_matches_trl(tmp_path, tokenizer, tiny_llama_path):
    """keep_start cuts prompt + completion at max_length and drops a row whose prompt alone fills it: the same rows
    and tokens as TRL, so the same losses."""
    rows = preference_rows(12)
    for index in (1, 6, 11):
        rows[index]["prompt"] += " the quick brown fox jumps over the lazy dog" * (3 if index < 10 else 4)
    long_prompt = len(tokenizer(rows[1]["prompt"])["input_ids"])
    # rows 1 and 6 keep 3 completion tokens (" Answer: yes" / " Answer: no"); row 11's prompt alone fills max_length
    max_length = long_prompt + 3
    assert len(tokenizer(rows[11]["prompt"])["input_ids"]) >= max_length
    runs = _trl_and_ours(tmp_path, tiny_llama_path, tokenizer, rows, max_length=max_length)
    assert len(runs["ours"].train_dataset) == len(runs["trl"].train_dataset) == 11
    assert runs["ours"].dataset_stats["train"]["truncated"] >= 2
    trl_losses = [log["loss"] for log in _step_logs(runs["trl"])]
    assert_close([log["loss"] for log in _step_logs(runs["ours"])], trl_losses, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("trainer_name", ["trl", "ours"])
def test_several_gpus_in_one_process_are_refused_as_trl_refuses_them(tmp_path, tokenizer, trainer_name):
    """Trainer would wrap the model in nn.DataParallel: refused, with the launch command. n_gpu is the count Trainer
    reads (it sets it to 1 itself for a model split over GPUs by device_map); faked here, as a CPU has no GPUs."""
    trl = pytest.importorskip("trl") if trainer_name == "trl" else None
    config_class, trainer_class = (trl.DPOConfig, trl.DPOTrainer) if trl else (DPOTrainingArguments, DPOTrainer)
    args = config_class(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, activation_checkpointing=False, report_to="none"
    )
    assert args.n_gpu == 0
    args._n_gpu = 2
    with pytest.raises(ValueError, match=r"does not support `?nn\.DataParallel") as error:
        trainer_class(
            model=build_model(tokenizer),
            ref_model=build_model(tokenizer),
            args=args,
            train_dataset=Dataset.from_list(preference_rows(4)),
            processing_class=tokenizer,
        )
    if not trl:
        assert "accelerate launch --num_processes 2" in str(error.value)
        assert "torchrun --nproc_per_node 2" in str(error.value) and "CUDA_VISIBLE_DEVICES=0" in str(error.value)
