"""build_reference decides the reference of a run; every reference follows one protocol the trainer relies on."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import build_model, preference_rows

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.reference.choice import build_reference
from hf_dpo.reference.kinds import (
    AdapterReference,
    DisabledAdapterReference,
    FrozenModelReference,
    NoReference,
    PrecomputedReference,
    Reference,
)

LORA = {"r": 4, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}


def _args(tmp_path, **overrides):
    values = {"output_dir": str(tmp_path), "report_to": "none", "use_cpu": True, "save_strategy": "no"}
    return DPOTrainingArguments(**{**values, **overrides})


def _peft(tokenizer, **lora):
    return get_peft_model(build_model(tokenizer), LoraConfig(**{**LORA, **lora}))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("reference_free", NoReference),
        ("reference_free_loss", NoReference),
        ("ref_model", FrozenModelReference),
        ("plain_policy", FrozenModelReference),
        ("fresh_lora", DisabledAdapterReference),
        ("arrived_as_peft", AdapterReference),
    ],
)
def test_the_decision(tmp_path, tokenizer, case, expected):
    policy = _peft(tokenizer) if case in ("fresh_lora", "arrived_as_peft") else build_model(tokenizer)
    overrides = {"reference_free": {"reference_free": True}, "reference_free_loss": {"loss_type": "simpo"}}
    args = _args(tmp_path, **overrides.get(case, {}))
    ref_model = build_model(tokenizer, seed=1) if case == "ref_model" else None
    reference = build_reference(policy, ref_model, args, policy_came_as_peft=case == "arrived_as_peft")
    assert type(reference) is expected and isinstance(reference, Reference)
    if case == "ref_model":
        assert reference.model is ref_model and not any(p.requires_grad for p in ref_model.parameters())
    if case == "plain_policy":
        assert reference.model is not policy and reference.model.config.to_dict() == policy.config.to_dict()
    assert reference.runs_model is (expected is not NoReference)


def test_the_policy_itself_is_refused_as_its_reference(tmp_path, tokenizer):
    model = build_model(tokenizer)
    with pytest.raises(ValueError, match="ref_model is the policy model itself"):
        build_reference(model, model, _args(tmp_path), policy_came_as_peft=False)


def test_a_reference_by_name_is_loaded_with_the_model_init_kwargs(tmp_path, tokenizer):
    build_model(tokenizer, seed=1).save_pretrained(tmp_path / "ref")
    args = _args(tmp_path, model_init_kwargs={"dtype": "bfloat16"})
    reference = build_reference(build_model(tokenizer), str(tmp_path / "ref"), args, policy_came_as_peft=False)
    assert isinstance(reference, FrozenModelReference)
    assert {p.dtype for p in reference.model.parameters()} == {torch.bfloat16}


def test_trainer_ref_model_is_the_separate_reference_or_none(tmp_path, tokenizer):
    rows = preference_rows(8)
    with_copy = DPOTrainer(
        build_model(tokenizer), args=_args(tmp_path), train_dataset=rows, processing_class=tokenizer
    )
    assert with_copy.ref_model is with_copy.reference.model is not None
    lora = DPOTrainer(
        build_model(tokenizer),
        args=_args(tmp_path),
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=LoraConfig(**LORA),
    )
    assert lora.ref_model is None


def test_precompute_releases_what_only_the_reference_needed(tmp_path, tokenizer):
    """A copied SFT adapter is deleted once its log-probs are columns; a frozen copy is dropped."""
    model = _peft(tokenizer, init_lora_weights=False)
    args = _args(tmp_path, precompute_ref_log_probs=True, ref_logps_cache=False)
    trainer = DPOTrainer(model, args=args, train_dataset=preference_rows(8), processing_class=tokenizer)
    assert isinstance(trainer.reference, PrecomputedReference)
    assert list(model.peft_config) == ["default"] and trainer.ref_model is None
    trainer.save_model()
    assert (tmp_path / "adapter_model.safetensors").is_file() and not (tmp_path / "reference").exists()


def test_a_user_loaded_reference_adapter_is_kept_after_precompute(tmp_path, tokenizer):
    model = _peft(tokenizer, init_lora_weights=False)
    model.add_adapter("policy", LoraConfig(**LORA))
    args = _args(tmp_path, model_adapter_name="policy", ref_adapter_name="default", precompute_ref_log_probs=True)
    DPOTrainer(model, args=args, train_dataset=preference_rows(8), processing_class=tokenizer)
    assert set(model.peft_config) == {"default", "policy"}
