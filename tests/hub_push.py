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


def main() -> None:
    output_dir, mode = sys.argv[1], sys.argv[2]
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
