"""hf-dpo eval on held-out lists of answers: the ranking metrics against the reference, one line per list, the same
numbers as DPOTrainer.evaluate(), and answers generated from list rows."""

import argparse
import json

import pytest
from peft import LoraConfig
from tiny import build_model, build_tokenizer
from transformers import AutoModelForCausalLM

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.cli.commands import add_commands
from hf_dpo.tools.evaluation import format_table

BETA = 0.2
ANSWERS = [" Answer: yes good", " Answer: yes", " Answer: maybe", " Answer: no bad"]


def list_rows(count, offset=0):
    """Lists of 4 and 3 answers, given worst first."""
    rows = []
    for i in range(count):
        size = 4 - i % 2
        rows.append(
            {
                "prompt": f"Question: is the fox good {i + offset}?",
                "completions": ANSWERS[:size][::-1],
                "scores": [float(k) for k in range(size)],
            }
        )
    return rows


def _args(output_dir, **overrides):
    values = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-2,
        "max_steps": 8,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "beta": BETA,
        "loss_type": "plackett_luce",
    }
    return DPOTrainingArguments(**{**values, **overrides})


@pytest.fixture(scope="module")
def list_run(tmp_path_factory):
    """A base model, 10 held-out lists in a JSONL file, and a LoRA adapter trained on 32 other lists."""
    root = tmp_path_factory.mktemp("list_eval")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    (root / "held_out.jsonl").write_text("\n".join(json.dumps(row) for row in list_rows(10, offset=100)))
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(root / "base"),
        args=_args(root / "run"),
        train_dataset=list_rows(32),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    trainer.save_model()
    trainer.create_model_card()
    return root


def _run(argv):
    parser = argparse.ArgumentParser(prog="hf-dpo")
    add_commands(parser.add_subparsers(dest="command", required=True))
    options = parser.parse_args(argv)
    return options.run(options)


def test_eval_of_lists_reports_the_ranking_metrics_and_equals_the_trainer(list_run, capsys):
    data = str(list_run / "held_out.jsonl")
    assert _run(["eval", str(list_run / "run"), "--dataset", data, "--batch_size", "3"]) == 0
    out = list_run / "run" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loss_type"] == "plackett_luce" and metrics["beta"] == BETA  # from the model card
    assert (metrics["lists"], metrics["answers"], metrics["pairs"]) == (10, 35, 5 * 6 + 5 * 3)
    records = [json.loads(line) for line in (out / "lists.jsonl").read_text().splitlines()]
    assert [record["row"] for record in records] == list(range(10))
    assert records[0]["scores"] == [3, 2, 1, 0] and len(records[1]["rewards"]) == 3  # best first
    for record in records:
        expected = [BETA * (p - r) for p, r in zip(record["logps"], record["ref_logps"])]
        assert record["rewards"] == pytest.approx(expected, abs=1e-4)
    printed = capsys.readouterr().out
    assert "best answer ranked first (top-1)" in printed and "10 lists, 35 answers" in printed
    assert "lists.jsonl" in printed

    trainer = DPOTrainer(  # the trainer's evaluation of the same lists: the same means
        model=AutoModelForCausalLM.from_pretrained(list_run / "base"),
        args=_args(list_run / "trainer"),
        eval_dataset=list_rows(10, offset=100),
        processing_class=build_tokenizer(),
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    trainer.model.load_adapter(str(list_run / "run"), adapter_name="default")
    expected = trainer.evaluate()
    for name, key in (("accuracies", "reward_accuracy"), ("top1", "top1"), ("kendall_tau", "kendall_tau")):
        assert metrics[key] == pytest.approx(expected[f"eval_rewards/{name}"], abs=1e-5), key
    assert metrics["reward_margin"] == pytest.approx(expected["eval_rewards/margins"], abs=1e-4)


def test_generate_reads_the_prompts_of_list_rows(list_run, tmp_path):
    out = tmp_path / "eval"
    argv = ["eval", str(list_run / "run"), "--dataset", str(list_run / "held_out.jsonl"), "--output_dir", str(out)]
    assert _run([*argv, "--generate", "2", "--max_new_tokens", "4"]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [sample["prompt"] for sample in samples] == [
        "Question: is the fox good 100?",
        "Question: is the fox good 101?",
    ]


def test_the_table_of_pairs_has_no_list_lines():
    metrics = {"model": "m", "reference": "r", "dataset": "d", "split": "s", "beta": 0.1, "loss_type": "sigmoid"}
    assert "top-1" not in format_table({**metrics, "pairs": 2, "reward_accuracy": 1.0})
