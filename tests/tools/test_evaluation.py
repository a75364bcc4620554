"""hf-dpo eval end to end on a tiny LoRA run: pair metrics against the base model, answers side by side, scorers,
a reward model, and the same numbers as DPOTrainer.evaluate()."""

import argparse
import json

import pytest
import torch
from peft import LoraConfig
from tiny import build_model, build_tokenizer, preference_rows
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForSequenceClassification

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.cli.commands import add_commands
from hf_dpo.config.recipe import UserError
from hf_dpo.monitor.generation import SamplingSettings, generate
from hf_dpo.tools.evaluation import format_table
from hf_dpo.tools.trained_run import card_facts

BETA = 0.2


def _args(output_dir, **overrides):
    values = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-2,
        "max_steps": 12,
        "logging_steps": 4,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "beta": BETA,
        "max_length": 64,
    }
    return DPOTrainingArguments(**{**values, **overrides})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A base model folder, 16 held-out pairs in a JSONL file, and a LoRA adapter trained on 32 other pairs (saved
    as hf-dpo train saves it: adapter, tokenizer and model card)."""
    root = tmp_path_factory.mktemp("eval")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    rows = preference_rows(48)
    (root / "held_out.jsonl").write_text("\n".join(json.dumps(row) for row in rows[32:]))
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(root / "base"),
        args=_args(root / "run"),
        train_dataset=rows[:32],
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


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_model_card_gives_the_runs_settings(tiny_run):
    facts = card_facts(tiny_run / "run")
    assert facts["beta"] == BETA and facts["max_length"] == 64 and facts["loss_type"] == "sigmoid"
    assert facts["max_prompt_length"] is None


def test_eval_of_an_adapter_scores_pairs_against_its_base_model(tiny_run, capsys):
    data = str(tiny_run / "held_out.jsonl")
    assert _run(["eval", str(tiny_run / "run"), "--dataset", data, "--split", "test"]) == 0
    out = tiny_run / "run" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reference"] == "its base model, adapters disabled"
    assert metrics["beta"] == BETA  # from the model card
    assert metrics["pairs"] == 16 and metrics["reward_accuracy"] == 1.0 and metrics["reward_margin"] > 0
    pairs = _read_jsonl(out / "pairs.jsonl")
    assert [pair["row"] for pair in pairs] == list(range(16))
    for pair in pairs:  # the rewards are β times the log-ratios the file also holds
        expected = BETA * (pair["logp_chosen"] - pair["ref_logp_chosen"])
        assert pair["reward_chosen"] == pytest.approx(expected, abs=1e-4)
    wins = sum(pair["outcome"] == "win" for pair in pairs)
    ties = sum(pair["outcome"] == "tie" for pair in pairs)
    assert metrics["win_rate"] == pytest.approx((wins + ties / 2) / 16)
    printed = capsys.readouterr().out
    assert "reward accuracy" in printed and "win rate vs reference (pairs)" in printed
    assert "the table is in the model card" in printed
    # the run's card, written when training ended, now carries the evaluation; a second one replaces it
    assert _run(["eval", str(tiny_run / "run"), "--dataset", data, "--split", "test", "--max_samples", "4"]) == 0
    card = (tiny_run / "run" / "README.md").read_text()
    assert card.count("## Held-out evaluation") == 1 and "on 4 pairs of" in card
    assert card.index("## Held-out evaluation") < card.index("## Citation")


def test_eval_numbers_are_the_trainers_evaluate_numbers(tiny_run, tmp_path):
    """A full model against a separate reference: hf-dpo eval's means equal DPOTrainer.evaluate() on the same pairs."""
    tokenizer = build_tokenizer()
    build_model(tokenizer, seed=1).save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    data = str(tiny_run / "held_out.jsonl")
    argv = ["eval", str(tmp_path / "policy"), "--dataset", data, "--ref", str(tiny_run / "base"), "--beta", "0.5"]
    assert _run([*argv, "--output_dir", str(tmp_path / "eval"), "--batch_size", "5"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tmp_path / "policy"),
        ref_model=AutoModelForCausalLM.from_pretrained(tiny_run / "base"),
        args=_args(tmp_path / "trainer", beta=0.5, max_length=1024),
        eval_dataset=preference_rows(48)[32:],
        processing_class=tokenizer,
    )
    expected = trainer.evaluate()
    assert metrics["reward_accuracy"] == pytest.approx(expected["eval_rewards/accuracies"])
    assert metrics["reward_margin"] == pytest.approx(expected["eval_rewards/margins"], rel=1e-5)


def test_user_mistakes_are_user_errors(tiny_run, tmp_path):
    """hf-dpo prints a UserError as one line (exit status 2) instead of a traceback."""
    data = str(tiny_run / "held_out.jsonl")
    with pytest.raises(UserError, match="pass --ref"):  # a full model without a recorded start
        _run(["eval", str(tiny_run / "base"), "--dataset", data])
    for spec, message in (("nothing", "takes module:function"), ("no_such_module:f", "No module named"),
                          ("json:no_such_function", "has no function")):  # fmt: skip
        with pytest.raises(UserError, match=message):
            _run(["eval", str(tiny_run / "run"), "--dataset", data, "--generate", "1", "--scorer", spec])
    with pytest.raises(UserError, match="add --generate N"):
        _run(["eval", str(tiny_run / "run"), "--dataset", data, "--scorer", "json:loads"])


def test_generate_side_by_side_with_several_scorers_writes_jsonl_html_and_length_statistics(
    tiny_run, tmp_path, monkeypatch, capsys
):
    (tmp_path / "my_scorer.py").write_text(
        "def shortness(completion, row):\n    return -len(completion)\n"  # rows are passed too
        "def has_e(completion, row):\n    return 'e' in completion\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "eval"
    argv = ["eval", str(tiny_run / "run"), "--dataset", str(tiny_run / "held_out.jsonl"), "--output_dir", str(out)]
    argv += ["--generate", "3", "--max_new_tokens", "5", "--scorer", "my_scorer:shortness", "my_scorer:has_e"]
    assert _run(argv) == 0
    samples = _read_jsonl(out / "samples.jsonl")
    assert len(samples) == 3 and samples[0]["prompt"] == "Question: is the fox good 32?"
    for sample in samples:
        assert sample["policy_tokens"] <= 5 and sample["reference_tokens"] <= 5
        assert sample["policy_scores"] == {
            "shortness": -len(sample["policy"]),
            "has_e": float("e" in sample["policy"]),
        }
        assert set(sample["outcomes"]) == {"shortness", "has_e"}
        assert set(sample["outcomes"].values()) <= {"win", "tie", "loss"}
    generation = json.loads((out / "metrics.json").read_text())["generation"]
    assert generation["settings"] == "greedy, at most 5 new tokens" and generation["scorers"] == ["shortness", "has_e"]
    expected_mean = sum(sample["policy_tokens"] for sample in samples) / 3
    assert generation["policy_mean_tokens"] == pytest.approx(expected_mean)
    assert 0.0 <= generation["reference_hit_limit"] <= 1.0
    for name in ("shortness", "has_e"):  # one mean per side and one win count per scorer
        scores = generation["scores"][name]
        mean = sum(sample["reference_scores"][name] for sample in samples) / 3
        assert (
            scores["reference_mean"] == pytest.approx(mean) and scores["wins"] + scores["ties"] + scores["losses"] == 3
        )
    html = (out / "samples.html").read_text()
    assert html.startswith("<!doctype html>") and "Question: is the fox good 32?" in html and "<script" not in html
    assert "mean score, has_e" in html and "shortness" in html
    printed = capsys.readouterr().out
    assert "mean tokens" in printed and "mean score, shortness" in printed and "mean score, has_e" in printed
    assert printed.count("    answers won ") == 2


def test_the_demo_scorers_read_the_answers_column(tiny_run):
    from hf_dpo.tools.scoring import bare_answer, one_sentence, states_answer

    row = {"answers": ["Paris"]}
    assert one_sentence("The capital of France is Paris.", row) == 1.0 and one_sentence("Hi. Paris.", row) == 0.0
    assert states_answer("Maybe it is Paris, maybe not.", row) == 1.0 and states_answer("Lyon", row) == 0.0
    assert bare_answer("Paris", row) == 1.0 and bare_answer("It is Paris.", row) == 0.0
    with pytest.raises(UserError, match="reads each row's accepted 'answers'; the data has no such column"):
        states_answer("Paris", {"prompt": "p", "chosen": "a", "rejected": "b"})


def test_reward_model_scores_both_answer_sets(tiny_run, tmp_path):
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    out = tmp_path / "eval"
    argv = ["eval", str(tiny_run / "run"), "--dataset", str(tiny_run / "held_out.jsonl"), "--output_dir", str(out)]
    assert _run([*argv, "--generate", "2", "--max_new_tokens", "4", "--reward_model", str(tmp_path / "rm")]) == 0
    samples = _read_jsonl(out / "samples.jsonl")
    name = f"reward model {tmp_path / 'rm'}"
    assert all(isinstance(sample["policy_scores"][name], float) for sample in samples)
    assert all(isinstance(sample["reference_scores"][name], float) for sample in samples)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["generation"]["scorers"] == [f"reward model {tmp_path / 'rm'}"]


def test_no_reference_counts_reference_log_probs_as_zero(tiny_run, tmp_path):
    out = tmp_path / "eval"
    argv = ["eval", str(tiny_run / "run"), "--dataset", str(tiny_run / "held_out.jsonl"), "--ref", "none"]
    assert _run([*argv, "--output_dir", str(out), "--generate", "1", "--max_new_tokens", "3"]) == 0
    pair = _read_jsonl(out / "pairs.jsonl")[0]
    assert pair["ref_logp_chosen"] == 0.0 and pair["reward_chosen"] == pytest.approx(BETA * pair["logp_chosen"])
    sample = _read_jsonl(out / "samples.jsonl")[0]
    assert "reference" not in sample and "policy" in sample
    assert "no reference" in (out / "samples.html").read_text()


def test_generation_is_greedy_by_default_and_sampling_repeats_with_its_seed(tokenizer):
    model = build_model(tokenizer)
    prompts = [tokenizer("Question: is the fox good?")["input_ids"], [tokenizer.bos_token_id]]
    greedy = generate(model, tokenizer, prompts, SamplingSettings(max_new_tokens=6))
    assert greedy == generate(model, tokenizer, prompts, SamplingSettings(max_new_tokens=6))
    sampled = SamplingSettings(max_new_tokens=6, do_sample=True, seed=3)
    first, again = generate(model, tokenizer, prompts, sampled), generate(model, tokenizer, prompts, sampled)
    assert first == again
    for answer in greedy:  # an untrained model rarely says EOS: it ran into the limit
        assert answer.num_tokens <= 6 and answer.hit_limit == (answer.num_tokens == 6)


def test_the_table_reads_the_metrics():
    metrics = {
        "model": "m",
        "reference": "r",
        "dataset": "d",
        "split": "test",
        "beta": 0.1,
        "loss_type": "sigmoid",
        "pairs": 4,
        "reward_accuracy": 0.75,
        "reward_margin": 1.5,
        "win_rate": 0.625,
        "wins": 2,
        "ties": 1,
        "losses": 1,
    }
    table = format_table(metrics)
    assert "reward accuracy                              0.750" in table
    assert "won 2, tied 1, lost 1" in table


def test_a_new_run_into_an_evaluated_folder_writes_a_card_without_the_old_evaluation(tiny_run, tmp_path):
    """Issue 26: retraining into a folder where hf-dpo eval ran kept the old table (read back from eval/) in the new
    card, which a push would publish."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run / "run", run)
    assert _run(["eval", str(run), "--dataset", str(tiny_run / "held_out.jsonl"), "--max_samples", "4"]) == 0
    assert "## Held-out evaluation" in (run / "README.md").read_text()
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert [name for name, *_ in metrics["weights"]] == ["adapter_model.safetensors"]
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_run / "base"),
        args=_args(run, max_steps=1),
        train_dataset=preference_rows(8),
        processing_class=build_tokenizer(),
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    trainer.save_model()
    trainer.create_model_card()
    card = (run / "README.md").read_text()
    assert "Held-out evaluation" not in card and "hf-dpo eval" not in card
