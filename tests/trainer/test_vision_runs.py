"""Vision-language runs end to end: every reference kind reads the images (a frozen copy, adapters disabled, a frozen
adapter, precomputed log-probs with a disk cache whose key covers the image bytes), LoRA on the language model by
default from the command line, QLoRA, evaluation, a model and processor loaded by name, and a clear error for each
wrong pairing of model, processor and rows."""

import logging
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import build_model, build_tokenizer
from tiny_vision import FAMILIES, build_processor, build_vlm, tiny_image, vision_rows
from torch.testing import assert_close

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import ScoredBatch
from hf_dpo.config.run_arguments import ModelArguments
from hf_dpo.data import DataFormatError
from hf_dpo.logprobs import sequence_logps
from hf_dpo.models.loading import load_causal_lm

LORA = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def _args(tmp_path, **overrides):
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "learning_rate": 1e-2,
        "max_steps": 2,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return DPOTrainingArguments(**{**values, **overrides})


def _losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize(
    ("kind", "peft"),
    [("model", None), ("peft_disabled", LORA), ("adapter", "sft adapter")],
)
def test_every_reference_kind_starts_at_log_2_and_precomputes_the_same_numbers(tmp_path, kind, peft):
    runs = {}
    for precompute in (False, True):
        model, processor = build_vlm("qwen2_vl")
        peft_config = peft
        if peft == "sft adapter":  # a PeftModel the run starts from: its adapter, frozen, is the reference
            model, peft_config = get_peft_model(model, LORA), None
        args = _args(tmp_path / str(precompute), precompute_ref_log_probs=precompute, ref_logps_cache=False)
        trainer = DPOTrainer(
            model, args=args, train_dataset=vision_rows(4), processing_class=processor, peft_config=peft_config
        )
        assert trainer.reference.kind == ("precomputed" if precompute else kind)
        trainer.train()
        runs[precompute] = _losses(trainer)
    assert runs[False][0] == pytest.approx(math.log(2), abs=1e-6)
    assert_close(runs[True], runs[False], atol=1e-6, rtol=1e-6)  # the reference columns are what the reference gives


def test_the_reference_cache_key_covers_the_image_bytes(tmp_path, caplog):
    def trainer(rows):
        model, processor = build_vlm("qwen2_vl")
        args = _args(tmp_path, precompute_ref_log_probs=True, ref_logps_cache_dir=str(tmp_path / "cache"))
        return DPOTrainer(model, args=args, train_dataset=rows, processing_class=processor)

    rows = vision_rows(4)
    with caplog.at_level(logging.INFO, logger="hf_dpo.reference.precompute"):
        first = trainer(rows)
        assert "reference log-probs cached in" in caplog.text
        caplog.clear()
        again = trainer(vision_rows(4))
        assert "reference log-probs loaded from" in caplog.text
        caplog.clear()
        changed = [dict(row) for row in rows]
        changed[0]["images"] = [tiny_image(99)]  # the same size: the same tokens, other pixels
        other = trainer(changed)
        assert "reference log-probs cached in" in caplog.text  # a new key, computed again
    assert first.train_dataset["prompt_input_ids"] == other.train_dataset["prompt_input_ids"]
    assert first.train_dataset["ref_chosen_logps"] == again.train_dataset["ref_chosen_logps"]
    assert first.train_dataset["ref_chosen_logps"][0] != other.train_dataset["ref_chosen_logps"][0]
    assert first.train_dataset["ref_chosen_logps"][1:] == other.train_dataset["ref_chosen_logps"][1:]


def test_precomputed_reference_log_probs_equal_the_models_on_the_fly(tmp_path):
    model, processor = build_vlm("llava")
    trainer = DPOTrainer(
        model, args=_args(tmp_path, precompute_ref_log_probs=True, ref_logps_cache=False),
        train_dataset=vision_rows(4), processing_class=processor,
    )  # fmt: skip
    rows = list(trainer.train_dataset)
    batch = ScoredBatch.from_collated(trainer.data_collator(rows))
    with torch.no_grad():
        expected = sequence_logps(build_vlm("llava")[0], batch).reshape(2, -1)
    assert_close(torch.tensor([row["ref_chosen_logps"] for row in rows]), expected[0], atol=1e-5, rtol=1e-5)
    assert_close(torch.tensor([row["ref_rejected_logps"] for row in rows]), expected[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_command_line_lora_adapts_the_language_model_unless_told(family):
    model, _ = build_vlm(family)
    language = {name for name, _ in model.get_decoder().named_modules()}
    for vision, expect_vision in ((False, False), (True, True)):
        config = ModelArguments(use_peft=True, lora_r=2, lora_vision_tower=vision).peft_config()
        adapted = get_peft_model(build_vlm(family)[0], config)
        names = [name.split(".lora_A")[0] for name, _ in adapted.named_parameters() if ".lora_A." in name]
        in_vision = [
            name
            for name in names
            if not any(name.endswith(f"language_model.{m}") or name.endswith(f"text_model.{m}") for m in language if m)
        ]
        assert names and bool(in_vision) == expect_vision, (family, vision, in_vision[:3])


def test_the_vision_exclusion_is_dropped_for_a_text_model(tmp_path, recwarn):
    from hf_dpo.models.adapters import wrap_peft

    model = wrap_peft(build_model(build_tokenizer()), ModelArguments(use_peft=True, lora_r=2).peft_config(), False)
    assert model.peft_config["default"].exclude_modules is None
    assert not [w for w in recwarn if "no modules were excluded" in str(w.message)]


def test_qlora_trains_a_4bit_vision_language_model_loaded_by_path(tmp_path):
    pytest.importorskip("bitsandbytes")
    model, processor = build_vlm("qwen2_vl", hidden_size=64)  # bitsandbytes' CPU kernels work in blocks of 64
    model.save_pretrained(tmp_path / "model")
    quantized = load_causal_lm(str(tmp_path / "model"), load_in_4bit=True, bnb_4bit_compute_dtype="float32")
    assert type(quantized).__name__ == "Qwen2VLForConditionalGeneration" and quantized.is_loaded_in_4bit
    lora = ModelArguments(use_peft=True, lora_r=4, load_in_4bit=True).peft_config()
    trainer = DPOTrainer(
        quantized, args=_args(tmp_path, max_steps=6, learning_rate=5e-2), train_dataset=vision_rows(6),
        eval_dataset=vision_rows(2), processing_class=processor, peft_config=lora,
    )  # fmt: skip
    assert trainer.reference.kind == "peft_disabled"
    assert trainer.evaluate()["eval_loss"] == pytest.approx(math.log(2), abs=1e-5)
    trainer.train()
    losses = _losses(trainer)
    assert losses[-1] < losses[0], losses


def test_evaluation_reads_the_images_of_a_late_dataset_too(tmp_path):
    model, processor = build_vlm("idefics3")
    trainer = DPOTrainer(
        model, args=_args(tmp_path), train_dataset=vision_rows(4), eval_dataset=vision_rows(2, seed=5),
        processing_class=processor,
    )  # fmt: skip
    before = trainer.evaluate()
    assert before["eval_loss"] == pytest.approx(math.log(2), abs=1e-6) and before["eval_logps/chosen"] < 0
    trainer.train()
    late = trainer.evaluate(eval_dataset=vision_rows(2, seed=5))
    assert late["eval_loss"] == pytest.approx(trainer.evaluate()["eval_loss"], abs=1e-6)


def test_a_model_given_by_name_loads_as_image_text_to_text_with_its_processor(tmp_path):
    model, processor = build_vlm("llava")
    model.save_pretrained(tmp_path / "llava")
    processor.save_pretrained(tmp_path / "llava")
    trainer = DPOTrainer(str(tmp_path / "llava"), args=_args(tmp_path / "out"), train_dataset=vision_rows(4))
    assert type(trainer.model).__name__ == "LlavaForConditionalGeneration"
    assert type(trainer.processing_class).__name__ == "LlavaProcessor"
    trainer.train()
    assert _losses(trainer)[0] == pytest.approx(math.log(2), abs=1e-6)


def test_a_processor_whose_tokenizer_has_no_pad_token_gets_its_eos(tmp_path):
    """Before: AttributeError: 'Qwen2VLProcessor' object has no attribute 'eos_token', setting the pad token."""
    model, processor = build_vlm("qwen2_vl")
    processor.tokenizer.pad_token = None
    trainer = DPOTrainer(
        model, args=_args(tmp_path, max_steps=1), train_dataset=vision_rows(2), processing_class=processor
    )
    assert processor.tokenizer.pad_token == "<|im_end|>" and trainer.processing_class is processor
    trainer.train()


def test_wrong_pairings_of_model_processor_and_rows_are_refused(tmp_path):
    vlm, processor = build_vlm("qwen2_vl")
    with pytest.raises(
        ValueError, match=r"the processing class is a tokenizer .* pass processing_class=AutoProcessor"
    ):
        DPOTrainer(vlm, args=_args(tmp_path), train_dataset=vision_rows(2), processing_class=processor.tokenizer)
    tokenizer = build_tokenizer()
    with pytest.raises(ValueError, match=r"a processor was given, but the model .* is text-only"):
        DPOTrainer(
            build_model(tokenizer), args=_args(tmp_path), train_dataset=vision_rows(2), processing_class=processor
        )
    with pytest.raises(
        DataFormatError, match=r"'images' column, and the processing class is a tokenizer.*remove_columns"
    ):
        DPOTrainer(
            build_model(tokenizer), args=_args(tmp_path), train_dataset=vision_rows(2), processing_class=tokenizer
        )
    with pytest.raises(ValueError, match=r"the eval dataset has an 'images' column .* text-only"):
        DPOTrainer(
            build_model(tokenizer), args=_args(tmp_path), train_dataset=[{"prompt": "q", "chosen": " a", "rejected": " b"}],
            eval_dataset=vision_rows(2), processing_class=build_processor("llava"),
        )  # fmt: skip


def _torchvision_missing() -> str | None:
    try:
        import torchvision  # noqa: F401
    except Exception as error:  # absent, or built for another torch ("operator torchvision::nms does not exist")
        return f"Qwen2-VL's own processor builds its video processor with torchvision, which is missing here ({error})"
    return None


@pytest.mark.skipif(_torchvision_missing() is not None, reason=str(_torchvision_missing()))
def test_qwens_own_processor_with_its_video_half_trains_as_the_image_only_one(tmp_path):
    """With torchvision (the vision extra), Qwen2-VL's processor as AutoProcessor builds it: the same ids and losses."""
    runs = {}
    for video in (False, True):
        model, _ = build_vlm("qwen2_vl")
        processor = build_processor("qwen2_vl", video=video)
        trainer = DPOTrainer(
            model, args=_args(tmp_path / str(video)), train_dataset=vision_rows(4), processing_class=processor
        )
        trainer.train()
        runs[video] = (trainer.train_dataset["prompt_input_ids"], _losses(trainer))
    assert runs[True][0] == runs[False][0]
    assert_close(runs[True][1], runs[False][1], atol=1e-6, rtol=1e-6)


def test_samples_that_would_be_generated_without_their_images_are_refused(tmp_path):
    model, processor = build_vlm("llava")
    with pytest.raises(ValueError, match="generate_samples > 0 generates answers from the prompts' token ids alone"):
        DPOTrainer(
            model, args=_args(tmp_path, generate_samples=2), train_dataset=vision_rows(2), eval_dataset=vision_rows(2),
            processing_class=processor,
        )  # fmt: skip
