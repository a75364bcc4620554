"""``hf-dpo train`` after Ctrl-C: one line naming the checkpoint and how to resume, exit status 130; and
``--resume_from_checkpoint true``/``false`` (flag or YAML) meaning Trainer's booleans."""

import json

import pytest
import yaml
from tiny import build_model, build_tokenizer, preference_rows

import hf_dpo.cli.train as cli_train
from hf_dpo.cli.dispatch import main
from hf_dpo.config.run_arguments import parse_train_args


def _recipe(tmp_path, **overrides):
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(row) for row in preference_rows(16)))
    recipe = {
        "model_name_or_path": str(tmp_path / "model"),
        "dataset_name": str(tmp_path / "pairs.jsonl"),
        "dataset_test_split": None,
        "output_dir": str(tmp_path / "out"),
        "max_steps": 4,
        "per_device_train_batch_size": 2,
        "save_strategy": "steps",
        "save_steps": 10,  # none on the way: the checkpoint is the one Ctrl-C writes
        "report_to": "none",
        "use_cpu": True,
        "plot": False,
        "logging_steps": 1,
        **overrides,
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    return str(tmp_path / "tiny.yaml")


class Built(list):
    """The trainers ``hf-dpo train`` built; ``press_at``: the step after which Ctrl-C's flag is set."""

    press_at = None


@pytest.fixture
def trainers(monkeypatch):
    """The trainers ``hf-dpo train`` builds, each recording the ``resume_from_checkpoint`` its ``train()`` was
    given; at ``press_at`` a trainer gets the flag the Ctrl-C handler sets."""
    built = Built()
    original = cli_train.build_trainer

    def build(*args, **kwargs):
        trainer = original(*args, **kwargs)
        step_end, train = trainer._interrupt.on_step_end, trainer.train
        trainer.steps_run = []

        def on_step_end(args, state, control, **rest):
            trainer.steps_run.append(state.global_step)
            trainer._interrupt.requested = state.global_step == built.press_at
            return step_end(args, state, control, **rest)

        def recording_train(resume_from_checkpoint=None, **rest):
            trainer.resumed_from = resume_from_checkpoint
            return train(resume_from_checkpoint=resume_from_checkpoint, **rest)

        trainer._interrupt.on_step_end, trainer.train = on_step_end, recording_train
        built.append(trainer)
        return trainer

    monkeypatch.setattr(cli_train, "build_trainer", build)
    return built


def test_ctrl_c_is_one_line_with_the_checkpoint_and_exit_130_then_true_resumes(tmp_path, trainers, capsys):
    recipe = _recipe(tmp_path)
    trainers.press_at = 2
    assert main(["train", recipe]) == 130
    checkpoint = f"{tmp_path / 'out'}/checkpoint-2"
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"hf-dpo: interrupted after step 2; checkpoint saved in {checkpoint}. Resume: the same command with "
        f"--resume_from_checkpoint {checkpoint} (or --resume_from_checkpoint true: the latest in output_dir)"
    )
    assert (tmp_path / "out" / "checkpoint-2" / "trainer_state.json").is_file()
    trainers.press_at = None
    assert main(["train", recipe, "--resume_from_checkpoint", "true"]) == 0
    assert trainers[-1].resumed_from is True and trainers[-1].state.global_step == 4
    # the resumed run trained steps 3 and 4 only: it started from the checkpoint's step, not from 0
    assert trainers[-1].steps_run == [3, 4]


def test_false_starts_afresh_and_true_without_a_checkpoint_is_one_line(tmp_path, trainers, capsys):
    recipe = _recipe(tmp_path, max_steps=1)
    assert main(["train", recipe, "--resume_from_checkpoint", "true"]) == 2
    assert (
        "hf-dpo: error: resume_from_checkpoint=true: no checkpoint-* folder in output_dir" in capsys.readouterr().err
    )
    assert main(["train", recipe, "--resume_from_checkpoint", "False"]) == 0
    assert trainers[-1].resumed_from is None


def test_yaml_booleans_are_the_words_the_flags_give(tmp_path):
    for value, word in ((True, "true"), (False, "false")):
        (tmp_path / "r.yaml").write_text(yaml.safe_dump({"output_dir": "o", "resume_from_checkpoint": value}))
        args = parse_train_args([str(tmp_path / "r.yaml")])[3]
        assert args.resume_from_checkpoint == word
        assert cli_train.resume_value(args.resume_from_checkpoint) is (True if value else None)
