"""Run by tests/test_hub.py in a subprocess with HF_ENDPOINT pointing at the test Hub (tests/hub_server.py):
trains a tiny LoRA policy for a few steps and pushes it, as the adapter or merged (argv[2] == "merged").
Writes the merged model's logits on a fixed batch to OUTPUT_DIR/expected_logits.pt for the test to compare."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from peft import LoraConfig
from tiny import build_model, build_tokenizer, preference_rows

from hf_dpo import DPOTrainer, DPOTrainingArguments


def push_from_the_command_line(output_dir: str) -> None:
    """hf-dpo train --push_to_hub --push_merged on a tiny Llama saved to disk and a JSONL file of pairs."""
    import json

    from hf_dpo.cli.dispatch import main as hf_dpo

    tokenizer = build_tokenizer()
    model_dir, data_file = Path(output_dir) / "model", Path(output_dir) / "pairs.jsonl"
    build_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data_file.write_text("\n".join(json.dumps(row) for row in preference_rows(8)))
    flags = {
        "model_name_or_path": model_dir, "dataset_name": data_file, "dataset_test_split": "none", "use_peft": "true",
        "lora_target_modules": "q_proj,v_proj", "max_steps": 2, "per_device_train_batch_size": 4,
        "output_dir": Path(output_dir) / "run", "use_cpu": "true", "report_to": "none", "push_to_hub": "true",
        "hub_model_id": "tiny-dpo-cli", "hub_token": "hf_FakeTokenForPushTests0123456789", "push_merged": "true",
    }  # fmt: skip
    assert hf_dpo(["train", *[f"--{key}={value}" for key, value in flags.items()]]) == 0
    print("PUSHED tester/tiny-dpo-cli")


def push_a_vision_language_run(output_dir: str, merged: bool) -> None:
    """A tiny LLaVA with LoRA on its language model, trained on rows with images, pushed with its processor."""
    from tiny_vision import build_vlm, vision_rows

    from hf_dpo.config.run_arguments import ModelArguments

    model, processor = build_vlm("llava")
    name = f"tiny-dpo-vision{'-merged' * merged}"
    args = DPOTrainingArguments(
        output_dir=output_dir, hub_model_id=name, hub_token="hf_FakeTokenForPushTests0123456789",
        per_device_train_batch_size=2, learning_rate=5e-2, max_steps=2, report_to="none", save_strategy="no",
        use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    lora = ModelArguments(use_peft=True, lora_r=4).peft_config()  # the command line's: the language model only
    trainer = DPOTrainer(model, args=args, train_dataset=vision_rows(4), processing_class=processor, peft_config=lora)
    trainer.train()
    trainer.push_to_hub(merge_adapter=merged, dataset="tiny-image-preferences")
    if merged:
        row = vision_rows(1)[0]
        text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        batch = processor(text=[text], images=[row["images"]], return_tensors="pt")
        with torch.no_grad():
            torch.save(trainer.model.eval()(**batch).logits, Path(output_dir) / "expected_logits.pt")
    print("PUSHED", trainer.hub_model_id)


def main() -> None:
    output_dir, mode = sys.argv[1], sys.argv[2]
    if mode == "cli":
        return push_from_the_command_line(output_dir)
    if mode.startswith("vision"):
        return push_a_vision_language_run(output_dir, merged=mode == "vision-merged")
    tokenizer = build_tokenizer()
    args = DPOTrainingArguments(
        output_dir=output_dir,
        hub_model_id=f"tiny-dpo-{mode}",
        hub_token="hf_FakeTokenForPushTests0123456789",
        per_device_train_batch_size=4,
        learning_rate=5e-2,
        max_steps=3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DPOTrainer(
        build_model(tokenizer),
        args=args,
        train_dataset=preference_rows(12),
        processing_class=tokenizer,
        peft_config=lora,
    )
    trainer.train()
    if mode == "merged":
        trainer.push_to_hub(merge_adapter=True, dataset="tiny-preferences")
        batch = tokenizer(["Question: is the fox good?"], return_tensors="pt")
        with torch.no_grad():
            logits = trainer.model.eval()(**batch).logits
        torch.save(logits, Path(output_dir) / "expected_logits.pt")
    else:
        trainer.push_to_hub(dataset="tiny-preferences")
    print("PUSHED", trainer.hub_model_id)


if __name__ == "__main__":
    main()
