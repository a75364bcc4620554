"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: numbers that must not depend on the
number of processes. Prints rank 0's view as JSON:

- ``eval_loss`` of an evaluation set that does not fill the last batch (7 pairs, 2 per process), next to the
  per-pair mean computed in one local pass;
- the ``bco_pair`` running reward statistics each process holds after two DDP steps;
- a KTO run (its KL reference point is reduced over processes) against the same run in one process;
- DPO with each kind of reference (frozen copy, disabled adapters, SFT adapter, precomputed), against one process;
- lists of answers of different lengths (Plackett-Luce), on the fly and precomputed (the sharded reference pass
  gathers lists of different lengths), against one process.
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
        args=_args(output_dir, loss_type="bco_pair", bco_pair_running_mean=True, max_steps=2),
        train_dataset=varied_rows(8),
        processing_class=tokenizer,
    )
    trainer.train()
    totals = trainer.reward_mean.state_dict()["bco_rewards"]
    return {"bco_rewards_per_process": gather_object([totals])}


def kto_rows(count, offset=0):
    subjects = ["fox", "dog", "spider", "Paris", "France", "capital", "answer", "question"]
    return [
        {
            "prompt": f"Question: is the {subjects[i % len(subjects)]} good {i + offset}?",
            "completion": " Answer: yes good" if (i // 2) % 2 == 0 else " Answer: no bad",
            "label": (i // 2) % 2 == 0,
        }
        for i in range(count)
    ]


def kto_trainer(tokenizer, output_dir, per_device_batch):
    """KTO for 2 steps on 8 rows taken in order: 2 processes x 2 rows see the same global batch as 1 x 4."""
    args = _args(
        output_dir,
        loss_type="kto",
        max_steps=2,
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=per_device_batch,
        train_sampling_strategy="sequential",
        logging_steps=1,
    )
    return DPOTrainer(build_model(tokenizer), args=args, train_dataset=kto_rows(8), processing_class=tokenizer)


def kto_check(tokenizer, output_dir):
    trainer = kto_trainer(tokenizer, output_dir, per_device_batch=2)
    trainer.train()
    first_log = next(entry for entry in trainer.state.log_history if "kl" in entry)
    metrics = trainer.evaluate(eval_dataset=kto_rows(8, offset=100))
    return {"kto_eval_loss": metrics["eval_loss"], "kto_first_kl": first_log["kl"], "kto_loss": first_log["loss"]}


REFERENCE_KINDS = ("copy", "peft_disabled", "sft_adapter", "precomputed")


def reference_kind_trainer(tokenizer, output_dir, kind, per_device_batch):
    """DPO for 2 steps on 8 pairs taken in order with each kind of reference: 2 x 2 pairs see the 1 x 4 batch."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model, extra = build_model(tokenizer), {}
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    if kind == "peft_disabled":
        extra["peft_config"] = lora
    elif kind == "sft_adapter":
        torch.manual_seed(1)
        model = get_peft_model(model, LoraConfig(**{**lora.to_dict(), "init_lora_weights": False}))
    args = _args(
        output_dir,
        max_steps=2,
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=per_device_batch,
        train_sampling_strategy="sequential",
        logging_steps=1,
        precompute_ref_log_probs=kind == "precomputed",
        ref_logps_cache=False,
    )
    return DPOTrainer(
        model,
        args=args,
        train_dataset=varied_rows(8),
        eval_dataset=varied_rows(6),  # given up front: a precomputed reference scores it before release
        processing_class=tokenizer,
        **extra,
    )


def reference_kinds_check(tokenizer, output_dir):
    result = {}
    for kind in REFERENCE_KINDS:
        trainer = reference_kind_trainer(tokenizer, f"{output_dir}/{kind}", kind, per_device_batch=2)
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        result[f"{kind}_losses"] = losses
        result[f"{kind}_eval_loss"] = trainer.evaluate()["eval_loss"]
    return result


def answer_lists(count, offset=0):
    """Lists of 4, 3 and 2 answers in turn, in order of quality, with scores."""
    answers = [" Answer: yes good", " Answer: yes", " Answer: maybe", " Answer: no bad"]
    rows = []
    for i in range(count):
        size = (4, 3, 2)[i % 3]
        rows.append(
            {
                "prompt": f"Question: is the fox good {i + offset}?",
                "completions": answers[:size],
                "scores": [float(size - k) for k in range(size)],
            }
        )
    return rows


def list_trainer(tokenizer, output_dir, precompute, per_device_batch):
    """Plackett-Luce for 2 steps on 8 lists taken in order: 2 x 2 lists see the 1 x 4 batch."""
    args = _args(
        output_dir,
        loss_type="plackett_luce",
        max_steps=2,
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=per_device_batch,
        train_sampling_strategy="sequential",
        logging_steps=1,
        precompute_ref_log_probs=precompute,
        ref_logps_cache=False,
    )
    torch.manual_seed(0)
    return DPOTrainer(
        build_model(tokenizer),
        args=args,
        train_dataset=answer_lists(8),
        eval_dataset=answer_lists(7, offset=100),  # uneven over 2 processes x 2
        processing_class=tokenizer,
    )


def lists_check(tokenizer, output_dir):
    result = {}
    for precompute in (False, True):
        trainer = list_trainer(tokenizer, f"{output_dir}/lists_{precompute}", precompute, per_device_batch=2)
        trainer.train()
        name = "precomputed" if precompute else "on_the_fly"
        result[f"lists_{name}_losses"] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        metrics = trainer.evaluate()
        result[f"lists_{name}_eval"] = [metrics["eval_loss"], metrics["eval_rewards/kendall_tau"]]
        if precompute:
            result["lists_reference"] = list(trainer.train_dataset["ref_completion_logps"])
    return result


def main() -> None:
    output_dir = sys.argv[1]
    tokenizer = build_tokenizer()
    result = {
        **eval_loss_check(tokenizer, output_dir),
        **bco_state_check(tokenizer, output_dir),
        **kto_check(tokenizer, output_dir),
        **reference_kinds_check(tokenizer, output_dir),
        **lists_check(tokenizer, output_dir),
    }
    if torch.distributed.get_rank() == 0:
        print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
