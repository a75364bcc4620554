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
