"""hf-dpo sweep on a tiny recipe: one run per value, one reference pass for all of them, a plot and a table."""

import argparse
import json

import pytest
import yaml
from tiny import build_model, build_tokenizer, preference_rows

import hf_dpo.reference.precompute
from hf_dpo.cli.commands import add_commands
from hf_dpo.cli.train import train_from_flags
from hf_dpo.config.recipe import UserError
from hf_dpo.tools.sweep import final_metrics, run_name, sweep_points, sweep_table


@pytest.fixture
def tiny_recipe(tmp_path):
    """A tiny Llama saved to a folder, a dataset folder with train and test splits, and a recipe naming them."""
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "data"
    data.mkdir()
    rows = preference_rows(24)
    (data / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows[:16]))
    (data / "test.jsonl").write_text("\n".join(json.dumps(row) for row in rows[16:]))
    recipe = {
        "model_name_or_path": str(tmp_path / "model"),
        "dataset_name": str(data),
        "output_dir": str(tmp_path / "out"),
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 0.01,
        "logging_steps": 1,
        "report_to": "none",
        "use_cpu": True,
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    (tmp_path / "tiny.yaml").write_text("# tiny\n" + yaml.safe_dump(recipe))
    return tmp_path / "tiny.yaml"


def _run(argv):
    parser = argparse.ArgumentParser(prog="hf-dpo")
    add_commands(parser.add_subparsers(dest="command", required=True), train_from_flags)  # as hf_dpo.cli.dispatch does
    options = parser.parse_args(argv)
    return options.run(options)


def test_a_beta_sweep_runs_the_reference_pass_once(tiny_recipe, tmp_path, monkeypatch, capsys):
    passes = []
    compute = hf_dpo.reference.precompute.compute_reference_logps

    def counted(*args, **kwargs):
        passes.append(kwargs.get("description", args[6] if len(args) > 6 else "?"))
        return compute(*args, **kwargs)

    monkeypatch.setattr(hf_dpo.reference.precompute, "compute_reference_logps", counted)
    sweep_dir = tmp_path / "sweep"
    # --max_steps after the sweep's own flags: unknown to the sweep, handed to every run as hf-dpo train takes it
    argv = ["sweep", str(tiny_recipe), "--beta", "0.01", "0.1", "0.5", "--output_dir", str(sweep_dir)]
    assert _run([*argv, "--max_steps", "2"]) == 0
    assert len(passes) == 2, passes  # the train and the test split, once each, for three runs
    assert len(list((sweep_dir / "ref_logps").glob("*.pt"))) == 2
    for name in ("beta0.01", "beta0.1", "beta0.5"):
        state = json.loads((sweep_dir / name / "trainer_state.json").read_text())
        assert state["global_step"] == 2
        assert any("logps/mean_logratio" in entry for entry in state["log_history"])
    assert (sweep_dir / "sweep.png").stat().st_size > 10_000
    table = (sweep_dir / "sweep.md").read_text()
    assert "| beta0.01 |" in table and "held-out reward acc" in table and "eval reward acc" not in table
    assert json.loads((sweep_dir / "sweep.json").read_text())["runs"][2]["point"] == {"beta": 0.5}
    assert "hf-dpo sweep: 3 runs" in capsys.readouterr().out


def test_sweep_points_and_names():
    points = sweep_points({"loss_type": ["sigmoid", "ipo"], "beta": [0.1, 0.5]})
    assert [run_name(point) for point in points] == [
        "sigmoid-beta0.1",
        "sigmoid-beta0.5",
        "ipo-beta0.1",
        "ipo-beta0.5",
    ]
    assert [run_name(point) for point in sweep_points({"rpo_alpha": [0.0, 1.0], "learning_rate": [1e-4]})] == [
        "rpo0-lr0.0001",
        "rpo1-lr0.0001",
    ]
    with pytest.raises(ValueError, match="nothing to sweep: give one or more values to at least one of --loss_type"):
        sweep_points({"beta": None, "rpo_alpha": []})


def test_final_metrics_and_table_read_the_last_logs():
    history = [
        {"step": 1, "loss": 0.69, "rewards/accuracies": 0.0, "logps/mean_logratio": 0.0},
        {"step": 2, "loss": 0.5, "rewards/accuracies": 0.75, "rewards/margins": 0.3, "logps/mean_logratio": 0.1},
        {"step": 2, "eval_rewards/accuracies": 1.0, "eval_loss": 0.4},
    ]
    final = final_metrics(history)
    assert final == {"loss": 0.5, "rewards/accuracies": 0.75, "rewards/margins": 0.3, "logps/mean_logratio": 0.1,
                     "eval_rewards/accuracies": 1.0}  # fmt: skip
    # without held-out numbers after training, the last evaluation during training stands in
    table = sweep_table([{"name": "beta0.1", "final": final, "summary": {"train_seconds": 3.21}}])
    header = "| run | loss | reward acc | margin | mean log-ratio | eval reward acc | train s |"
    assert table.splitlines()[0] == header
    assert table.splitlines()[2] == "| beta0.1 | 0.5 | 0.75 | 0.3 | 0.1 | 1 | 3.2 |"


def test_the_table_shows_held_out_numbers_once_and_the_task_checks_before_and_after():
    """sweep.md repeated the evaluation during training next to the held-out numbers after it (the same pairs);
    the demo's checks get one column each, with the starting model's share in the header."""
    final = {"loss": 0.5, "eval_rewards/accuracies": 1.0, "eval_rewards/margins": 2.0}
    summary = {"train_seconds": 3.0, "reward_accuracy_after": 0.95, "reward_margin_after": 2.5}
    summary |= {"task_before": {"format": 0.5, "fact": 0.8}, "task_after": {"format": 0.9, "fact": 0.78}}
    table = sweep_table([{"name": "rpo1", "final": final, "summary": summary}])
    assert table.splitlines()[0] == (
        "| run | loss | held-out reward acc | held-out margin | format after (before: 0.500) | "
        "fact after (before: 0.800) | train s |"
    )
    assert table.splitlines()[2] == "| rpo1 | 0.5 | 0.95 | 2.5 | 0.9 | 0.78 | 3.0 |"


def test_a_mistyped_flag_is_named_before_nothing_to_sweep(tiny_recipe):
    with pytest.raises(UserError, match=r"^--bta: did you mean --beta\?$"):
        _run(["sweep", str(tiny_recipe), "--bta", "0.1"])
    with pytest.raises(UserError, match="nothing to sweep"):
        _run(["sweep", str(tiny_recipe), "--max_steps", "2"])


def test_sweep_keeps_unknown_flags_for_train_but_not_hf_dpos_debug(tiny_recipe):
    parser = argparse.ArgumentParser(prog="hf-dpo")
    parser.add_argument("--debug", action="store_true")
    add_commands(parser.add_subparsers(dest="command", required=True), train_from_flags)  # as hf_dpo.cli.dispatch does
    options = parser.parse_args(["sweep", str(tiny_recipe), "--beta", "0.1", "--max_steps", "2", "--debug"])
    assert options.train_flags == ["--max_steps", "2"] and options.debug is True
    options = parser.parse_args(["--debug", "sweep", str(tiny_recipe), "--loss_type", "ipo"])
    assert options.debug is True and options.train_flags == [] and options.loss_type == ["ipo"]
