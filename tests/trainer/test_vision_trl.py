"""Vision-language DPO next to TRL 1.16's DPOTrainer: the same tiny model of each family, the same rows, 3 full-batch
steps in fp32, the same losses and metrics; and per step, the images our vision tower encodes (each once per pass,
policy and reference) against TRL's (each twice per pass: its chosen and rejected copies)."""

import copy

import pytest
import torch
from datasets import Dataset
from tiny_vision import FAMILIES, build_vlm, vision_rows
from torch.testing import assert_close

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.models.vision import vision_tower

trl = pytest.importorskip("trl")

COMMON = {
    "per_device_train_batch_size": 4,  # every row in one batch: 3 full-batch steps
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
    "max_length": None,
}
COMPARED = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected",
            "logits/chosen", "logits/rejected", "entropy", "mean_token_accuracy", "num_tokens")  # fmt: skip


def _count_images(model, counts):
    """Append, for each vision-tower call, how many images (or crops) it encodes."""

    def hook(module, args, kwargs, output):
        grid = kwargs.get("grid_thw")
        pixels = args[0] if args else kwargs.get("pixel_values", kwargs.get("hidden_states"))
        counts.append(grid.shape[0] if grid is not None else pixels.shape[0])

    return vision_tower(model).register_forward_hook(hook, with_kwargs=True)


def _train(tmp_path, family, which, **overrides):
    model, processor = build_vlm(family)
    # TRL builds its reference by loading the policy's name again, and a model built in code has none: a copy, as
    # ours makes (made before the policy's hook, which a copy would carry along)
    reference = copy.deepcopy(model) if which == "trl" else None
    counts = []
    for each in filter(None, (model, reference)):  # ours copies the policy, hook included
        _count_images(each, counts)
    rows = vision_rows(4, images_per_row=2)
    if which == "trl":
        args = trl.DPOConfig(output_dir=str(tmp_path / which), **COMMON, **overrides)
        trainer = trl.DPOTrainer(
            model, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows), processing_class=processor
        )
    else:
        args = DPOTrainingArguments(output_dir=str(tmp_path / which), **COMMON, **overrides)
        trainer = DPOTrainer(model, args=args, train_dataset=rows, processing_class=processor)
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry], counts


@pytest.mark.parametrize("family", FAMILIES)
def test_three_full_batch_steps_give_trls_losses_and_metrics(family, tmp_path):
    ours, our_images = _train(tmp_path, family, "ours")
    theirs, their_images = _train(tmp_path, family, "trl")
    assert len(ours) == len(theirs) == 3 and ours[-1]["loss"] < ours[0]["loss"]
    for name in COMPARED:
        assert_close(
            torch.tensor([log[name] for log in ours], dtype=torch.float64),
            torch.tensor([log[name] for log in theirs], dtype=torch.float64),
            atol=1e-4, rtol=1e-5, msg=f"{family} {name}",
        )  # fmt: skip
    # 3 steps of a policy pass and a reference pass: TRL encodes each image twice per pass (its chosen and rejected
    # copies), ours once, except Gemma 3's padded rows
    assert len(their_images) == 6 and len(set(their_images)) == 1
    if family == "gemma3":
        assert our_images == their_images
    else:  # each model's first shared batch is also checked once against separate rows (1 + 2 per image)
        once = their_images[0] // 2
        check = [once, 2 * once]
        assert our_images == [*check, once, *check, once, *[once] * 4], our_images
