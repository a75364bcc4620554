"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: numbers that must not depend on the
number of processes. Prints rank 0's view as JSON:

- ``eval_loss`` of an evaluation set that does not fill the last batch (7 pairs, 2 per process), next to the
  per-pair mean computed in one local pass;
- the ``bco_pair`` running reward statistics each process holds after two DDP steps.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from accelerate.utils import gather_object
from tiny import build_model, build_tokenizer, preference_rows

from hf_dpo import DPODataCollator, DPOTrainer, DPOTrainingArguments


def varied_rows(count):
    """Pairs whose losses differ from one another once the model has trained a little."""
    rejected = [" Answer: no", " Answer: no bad", " no", " Answer: no bad bad bad", " maybe"]
    return [
        {
            "prompt": f"Question: is the fox good {i}?",
            "chosen": " Answer: yes good" + " yes" * (i % 3),
            "rejected": rejected[i % len(rejected)],
        }
        for i in range(count)
    ]


def _args(output_dir, **overrides):
    values = {
        "output_dir": output_dir,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "learning_rate": 5e-2,
        "max_steps": 3,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    return DPOTrainingArguments(**{**values, **overrides})


def eval_loss_check(tokenizer, output_dir):
    eval_rows = varied_rows(7)
    trainer = DPOTrainer(
        build_model(tokenizer),
        args=_args(output_dir),
        train_dataset=preference_rows(12),
        eval_dataset=eval_rows,
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    batch = DPODataCollator(tokenizer.pad_token_id)(list(trainer.eval_dataset))
    trainer.model.eval()
    with torch.no_grad():
        losses, _ = trainer._step(trainer.model, batch)
    return {"eval_loss": metrics["eval_loss"], "exact_eval_loss": losses.mean().item()}


def bco_state_check(tokenizer, output_dir):
    trainer = DPOTrainer(
        build_model(tokenizer),
        args=_args(output_dir, loss_type="bco_pair", max_steps=2),
        train_dataset=varied_rows(8),
        processing_class=tokenizer,
    )
    trainer.train()
    state = trainer._loss_state
    totals = (
        state["bco_rewards"].tolist()
        if "bco_rewards" in state
        else [state["bco_reward_sum"], state["bco_reward_count"]]
    )
    return {"bco_rewards_per_process": gather_object([totals])}


def main() -> None:
    output_dir = sys.argv[1]
    tokenizer = build_tokenizer()
    result = {**eval_loss_check(tokenizer, output_dir), **bco_state_check(tokenizer, output_dir)}
    if torch.distributed.get_rank() == 0:
        print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
