"""A PeftModel that arrives with a trained (SFT) adapter: that adapter, frozen, is the reference."""

import gc

import pytest
import torch
from peft import AutoPeftModelForCausalLM, LoraConfig, get_peft_model
from tiny import build_model, preference_rows
from torch.testing import assert_close
from transformers import LlamaForCausalLM

from hf_dpo import DPODataCollator, DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import ScoredBatch
from hf_dpo.logprobs import sequence_logps
from hf_dpo.reference.kinds import AdapterReference


def _sft_model(tokenizer, adapter_name="default"):
    """A LoRA with non-zero weights, standing in for an SFT adapter: the model differs from its base."""
    torch.manual_seed(1)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    return get_peft_model(build_model(tokenizer), lora, adapter_name=adapter_name)


def _args(tmp_path, **overrides):
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "learning_rate": 5e-2,
        "max_steps": 6,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    return DPOTrainingArguments(**{**values, **overrides})


def _logps(model, batch):
    with torch.no_grad():
        return sequence_logps(model.eval(), ScoredBatch.from_collated(batch))


def test_sft_adapter_is_the_reference_and_stays_fixed_while_its_copy_trains(tmp_path, tokenizer):
    gc.collect()
    alive_before = {id(obj) for obj in gc.get_objects() if type(obj) is LlamaForCausalLM}
    model = _sft_model(tokenizer)
    trainer = DPOTrainer(model, args=_args(tmp_path), train_dataset=preference_rows(24), processing_class=tokenizer)
    batch = DPODataCollator(tokenizer.pad_token_id)([trainer.train_dataset[i] for i in range(4)])
    sft_logps = _logps(model, batch)
    with model.disable_adapter():
        base_logps = _logps(model, batch)
    assert not torch.allclose(sft_logps, base_logps)  # the SFT adapter matters

    assert isinstance(trainer.reference, AdapterReference)
    assert (trainer.reference.ref_adapter, trainer.reference.train_adapter) == ("reference", "default")
    assert_close(trainer.reference(model, ScoredBatch.from_collated(batch)), sft_logps)
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".reference." in n)
    assert trainer.evaluate(eval_dataset=preference_rows(4))["eval_loss"] == torch.log(torch.tensor(2.0)).item()

    trainer.train()
    assert_close(trainer.reference(model, ScoredBatch.from_collated(batch)), sft_logps)  # fixed
    assert not torch.allclose(_logps(model, batch), sft_logps)  # the trained copy moved
    assert model.active_adapter == "default"
    gc.collect()
    assert len({id(obj) for obj in gc.get_objects() if type(obj) is LlamaForCausalLM} - alive_before) == 1


def test_named_adapters_and_precomputed_adapter_reference(tmp_path, tokenizer):
    model = _sft_model(tokenizer, adapter_name="sft")
    model.add_adapter("policy", LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    args = _args(tmp_path, model_adapter_name="policy", ref_adapter_name="sft", precompute_ref_log_probs=True)
    trainer = DPOTrainer(model, args=args, train_dataset=preference_rows(8), processing_class=tokenizer)
    batch = DPODataCollator(tokenizer.pad_token_id)([trainer.train_dataset[i] for i in range(4)])
    model.set_adapter("sft")
    expected = _logps(model, batch)
    model.set_adapter("policy")
    # a different batch composition rounds differently in float32: equal to 1e-6 relative
    assert_close(torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]]), expected, atol=0, rtol=1e-6)
    trainable = {n.split(".")[-2] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"policy"}


def _trainable(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("adapter_name", ["default", "policy"])
def test_a_run_saves_the_trained_adapter_alone_at_the_root(tmp_path, tokenizer, adapter_name):
    """peft writes every adapter, all but 'default' in sub-folders: the frozen 'reference' copy would be saved
    too, and a trained adapter with another name would not be where AutoPeftModel looks."""
    build_model(tokenizer).save_pretrained(tmp_path / "base")  # AutoPeftModel loads the base by its path
    torch.manual_seed(1)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    base = LlamaForCausalLM.from_pretrained(tmp_path / "base")
    model = get_peft_model(base, lora, adapter_name=adapter_name)
    trainer = DPOTrainer(model, args=_args(tmp_path), train_dataset=preference_rows(16), processing_class=tokenizer)
    trainer.train()
    trained = {name.replace(f".{adapter_name}.", "."): p for name, p in _trainable(model).items()}
    trainer.save_model(str(tmp_path / "final"))
    saved = sorted(path.name for path in (tmp_path / "final").iterdir())
    assert "adapter_model.safetensors" in saved and "adapter_config.json" in saved
    assert not [name for name in saved if (tmp_path / "final" / name).is_dir()], saved  # no sub-folder at all
    loaded = AutoPeftModelForCausalLM.from_pretrained(str(tmp_path / "final"))
    assert list(loaded.peft_config) == ["default"]
    weights = {name.replace(".default.", "."): p for name, p in loaded.named_parameters() if "lora_" in name}
    assert weights.keys() == trained.keys()
    for name, value in trained.items():
        assert torch.equal(weights[name], value), name
    assert set(model.peft_config) == {adapter_name, "reference"}  # the run itself still has its reference


@pytest.mark.parametrize("named", [False, True])
def test_resume_with_an_sft_adapter_reference_is_exact(tmp_path, tokenizer, named):
    def run(output_dir, resume=None):
        model = _sft_model(tokenizer, adapter_name="sft" if named else "default")
        overrides = {"save_strategy": "steps", "save_steps": 3, "max_steps": 6}
        if named:
            model.add_adapter("policy", LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
            overrides.update(model_adapter_name="policy", ref_adapter_name="sft")
        args = _args(output_dir, **overrides)
        trainer = DPOTrainer(model, args=args, train_dataset=preference_rows(24), processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=resume)
        return _trainable(model)

    straight = run(tmp_path / "run")
    resumed = run(tmp_path / "run", resume=str(tmp_path / "run" / "checkpoint-3"))
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        assert_close(resumed[name], value, atol=1e-6, rtol=0), name


# ---- LoRA on a mixture-of-experts' stacked experts (peft's target_parameters) -------------------------------------

EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def _tiny_moe(tokenizer, kind):
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
    }
    if kind == "qwen3_moe":
        return Qwen3MoeForCausalLM(Qwen3MoeConfig(**shared, moe_intermediate_size=16, num_experts=4))
    return GptOssForCausalLM(GptOssConfig(**shared, num_local_experts=4))


def _experts_lora(tokenizer, kind):
    """A PeftModel whose adapter (non-zero, as an SFT adapter) sits on the attention and on the stacked experts."""
    torch.manual_seed(1)
    lora = LoraConfig(r=4, target_modules=["q_proj"], target_parameters=EXPERTS, init_lora_weights=False)
    return get_peft_model(_tiny_moe(tokenizer, kind), lora)


def _reference_parameters(model):
    return {name: p for name, p in model.named_parameters() if ".reference." in name}


@pytest.mark.parametrize("kind", ["qwen3_moe", "gpt_oss"])
def test_a_reference_adapter_on_moe_experts_is_frozen_everywhere(tmp_path, tokenizer, kind):
    """The reference copy of an adapter on stacked experts: no parameter of it requires grad, before, during (with
    evaluations in between) and after training, even if something left it trainable; it never changes."""
    model = _experts_lora(tokenizer, kind)
    args = _args(tmp_path, max_steps=3, eval_strategy="steps", eval_steps=1, activation_checkpointing=False)
    trainer = DPOTrainer(
        model,
        args=args,
        train_dataset=preference_rows(12),
        eval_dataset=preference_rows(4),
        processing_class=tokenizer,
    )
    reference = _reference_parameters(model)
    assert any(".experts.lora_A.reference." in name for name in reference), sorted(reference)
    assert not any(p.requires_grad for p in reference.values())
    before = {name: p.detach().clone() for name, p in reference.items()}
    trained_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".default." in n}
    set_adapter = model.set_adapter

    def set_adapter_leaving_others_trainable(
        *args, **kwargs
    ):  # as a peft version leaving other adapters trainable would
        set_adapter(*args, **kwargs)
        for parameter in _reference_parameters(model).values():
            parameter.requires_grad_(True)

    model.set_adapter = set_adapter_leaving_others_trainable
    trainer.train()
    trainer.evaluate()
    assert not [name for name, p in _reference_parameters(model).items() if p.requires_grad]
    for name, parameter in _reference_parameters(model).items():
        assert torch.equal(parameter, before[name]), name
    moved = [n for n, p in model.named_parameters() if ".default." in n and not torch.equal(p, trained_before[n])]
    assert any(".experts." in name for name in moved) and all(
        p.requires_grad for n, p in model.named_parameters() if ".default." in n
    )


def test_a_reference_adapter_only_where_the_reference_needs_one(tmp_path, tokenizer):
    """LoRA from a peft_config: the reference is the base with adapters disabled, no copy; a PeftModel's adapter
    is copied, and the copy is deleted once precomputed log-probs have replaced it."""
    lora = LoraConfig(r=4, target_modules=["q_proj"], target_parameters=EXPERTS)
    fresh = DPOTrainer(
        _tiny_moe(tokenizer, "qwen3_moe"),
        args=_args(tmp_path, activation_checkpointing=False),
        train_dataset=preference_rows(4),
        processing_class=tokenizer,
        peft_config=lora,
    )
    assert fresh.reference.kind == "peft_disabled" and list(fresh.model.peft_config) == ["default"]
    args = _args(tmp_path, precompute_ref_log_probs=True, ref_logps_cache=False, activation_checkpointing=False)
    model = _experts_lora(tokenizer, "qwen3_moe")
    precomputed = DPOTrainer(model, args=args, train_dataset=preference_rows(4), processing_class=tokenizer)
    assert precomputed.reference.kind == "precomputed" and list(model.peft_config) == ["default"]
    assert not _reference_parameters(model)


@pytest.mark.parametrize("kind", ["qwen3_moe", "gpt_oss"])
def test_lora_on_moe_experts_from_a_peft_model_follows_trl(tmp_path, tokenizer, kind):
    """A PeftModel with LoRA on the experts: both trainers train a copy against the frozen starting adapter (TRL
    names it 'ref'); the losses (router balance included) agree step by step in float32."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset

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
    }
    losses = {}
    for name, config_class, trainer_class in (
        ("trl", trl.DPOConfig, trl.DPOTrainer),
        ("ours", DPOTrainingArguments, DPOTrainer),
    ):
        model = _experts_lora(tokenizer, kind)
        args = config_class(output_dir=str(tmp_path / name), **values)
        trainer = trainer_class(
            model=model, args=args, train_dataset=Dataset.from_list(preference_rows(12)), processing_class=tokenizer
        )
        trainer.train()
        losses[name] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        frozen = [n for n, p in model.named_parameters() if (".ref." in n or ".reference." in n) and p.requires_grad]
        assert not frozen, (name, frozen)
    assert len(losses["ours"]) == 3
    assert_close(losses["ours"], losses["trl"], atol=1e-5, rtol=1e-5)
