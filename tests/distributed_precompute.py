"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: precompute sharded over two processes,
train two DDP steps, evaluate, and print rank 0's view as JSON."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_model, build_tokenizer, preference_rows

from hf_dpo import DPOTrainer, DPOTrainingArguments


def main() -> None:
    output_dir, cache_dir = sys.argv[1], sys.argv[2]
    tokenizer = build_tokenizer()
    args = DPOTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        max_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=3,
        ref_logps_cache_dir=cache_dir,
    )
    trainer = DPOTrainer(
        build_model(tokenizer),
        args=args,
        train_dataset=preference_rows(11),  # uneven shards: 6 + 5
        eval_dataset=preference_rows(5),
        processing_class=tokenizer,
    )
    metrics = trainer.evaluate()
    trainer.train()
    if trainer.is_world_process_zero():
        print(
            "RESULT "
            + json.dumps(
                {
                    "ref_chosen": list(trainer.train_dataset["ref_chosen_logps"]),
                    "ref_rejected": list(trainer.train_dataset["ref_rejected_logps"]),
                    "eval_loss": metrics["eval_loss"],
                    "eval_accuracy": metrics["eval_rewards/accuracies"],
                    "steps": trainer.state.global_step,
                }
            )
        )


if __name__ == "__main__":
    main()
