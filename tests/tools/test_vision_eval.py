"""hf-dpo eval on a vision-language LoRA run: the processor saved with the adapter reads each pair's images, the
numbers are DPOTrainer.evaluate()'s on the same pairs, and --generate, which cannot pass images, is refused."""

import argparse
import json

import pytest
from peft import PeftModel
from tiny_vision import build_vlm, tiny_image
from transformers import AutoModelForImageTextToText

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.cli.commands import add_commands
from hf_dpo.config.recipe import UserError
from hf_dpo.config.run_arguments import ModelArguments


def _run(argv):
    parser = argparse.ArgumentParser(prog="hf-dpo")
    add_commands(parser.add_subparsers(dest="command", required=True))
    options = parser.parse_args(argv)
    return options.run(options)


def _rows(root, count, offset):
    rows = []
    for index in range(offset, offset + count):
        path = root / f"{index}.png"
        tiny_image(index).save(path)
        rows.append(
            {
                "images": [str(path)],
                "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"Is {index} good?"}]}],
                "chosen": [{"role": "assistant", "content": "Answer: yes good"}],
                "rejected": [{"role": "assistant", "content": "Answer: no bad"}],
            }
        )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision-eval")
    model, processor = build_vlm("llava")
    model.save_pretrained(root / "base")
    processor.save_pretrained(root / "base")
    held_out = _rows(root, 6, 100)
    (root / "held_out.jsonl").write_text("\n".join(json.dumps(row) for row in held_out))
    args = DPOTrainingArguments(
        output_dir=str(root / "run"), per_device_train_batch_size=2, learning_rate=2e-2, max_steps=4, beta=0.2,
        report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = DPOTrainer(
        AutoModelForImageTextToText.from_pretrained(root / "base"), args=args, train_dataset=_rows(root, 8, 0),
        processing_class=processor, peft_config=ModelArguments(use_peft=True, lora_r=4).peft_config(),
    )  # fmt: skip
    trainer.train()
    trainer.save_model()  # the adapter and the processor
    trainer.create_model_card()
    return root


def test_eval_reads_the_images_and_gives_the_trainers_numbers(vision_run, tmp_path):
    data = str(vision_run / "held_out.jsonl")
    argv = ["eval", str(vision_run / "run"), "--dataset", data, "--output_dir", str(tmp_path / "eval")]
    assert _run([*argv, "--batch_size", "4"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["pairs"] == 6 and metrics["reference"] == "its base model, adapters disabled"
    base = AutoModelForImageTextToText.from_pretrained(vision_run / "base")
    trainer = DPOTrainer(  # the trained adapter merged, against the base model: what eval compares
        PeftModel.from_pretrained(base, vision_run / "run").merge_and_unload(),
        ref_model=AutoModelForImageTextToText.from_pretrained(vision_run / "base"),
        args=DPOTrainingArguments(output_dir=str(tmp_path / "t"), beta=0.2, report_to="none", use_cpu=True),
        eval_dataset=[json.loads(line) for line in (vision_run / "held_out.jsonl").read_text().splitlines()],
        processing_class=build_vlm("llava")[1],
    )  # fmt: skip
    expected = trainer.evaluate()
    assert metrics["reward_accuracy"] == pytest.approx(expected["eval_rewards/accuracies"])
    assert metrics["reward_margin"] == pytest.approx(expected["eval_rewards/margins"], rel=1e-4, abs=1e-6)
    assert expected["eval_rewards/margins"] != 0  # the adapter moved the policy: a margin to compare


def test_generating_answers_without_their_images_is_refused(vision_run, tmp_path):
    argv = ["eval", str(vision_run / "run"), "--dataset", str(vision_run / "held_out.jsonl"), "--generate", "2"]
    with pytest.raises(UserError, match="--generate answers from the prompts' token ids alone"):
        _run([*argv, "--output_dir", str(tmp_path / "eval")])
