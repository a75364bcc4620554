"""``report_to`` reaches Trainer for every integration it has (transformers' default "none" kept); a run's
tracker page is linked in its card, and ``hf-dpo train`` closes the tracker after the scores after training."""

import json
from types import SimpleNamespace
from typing import ClassVar

import pytest
import yaml
from tiny import build_model, build_tokenizer, preference_rows
from transformers import Trainer, TrainerCallback
from transformers.integrations import integration_utils

from hf_dpo.cli.dispatch import main
from hf_dpo.config.run_arguments import parse_train_args


@pytest.mark.parametrize("name", sorted(integration_utils.INTEGRATION_TO_CALLBACK))
def test_every_integration_name_passes_through(name):
    args = parse_train_args(["--report_to", name, "--output_dir", "o"])[3]
    assert args.report_to == [name]


def test_no_tracker_unless_asked():
    assert parse_train_args(["--output_dir", "o"])[3].report_to == []  # transformers 5: "none"


class WandbCallback(TrainerCallback):
    """An offline stand-in for transformers' W&B callback: the attributes hf_dpo reads, and what it was sent."""

    runs: ClassVar[list["WandbCallback"]] = []

    def __init__(self):
        self.logged, self.finished = [], 0
        self._wandb = SimpleNamespace(run=SimpleNamespace(url="https://wandb.ai/me/dpo/runs/r1"), finish=self._finish)
        WandbCallback.runs.append(self)

    def _finish(self):
        self.finished += 1
        self._wandb.run = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        assert self._wandb.run is not None, "logged to a finished run"
        self.logged.append(dict(logs or {}))


def test_the_card_links_the_run_and_the_run_is_closed_after_the_last_scores(tmp_path, monkeypatch):
    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "wandb", WandbCallback)
    ended = []
    monkeypatch.setattr(Trainer, "end", lambda self: ended.append(self), raising=False)
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(row) for row in preference_rows(16)))
    recipe = {
        "model_name_or_path": str(tmp_path / "model"),
        "dataset_name": str(tmp_path / "pairs.jsonl"),
        "eval_split_size": 4,
        "output_dir": str(tmp_path / "out"),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "report_to": "wandb",
        "use_cpu": True,
        "plot": False,
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(tmp_path / "tiny.yaml")]) == 0
    run = WandbCallback.runs[-1]
    assert (
        "Logged to [Weights & Biases](https://wandb.ai/me/dpo/runs/r1)."
        in (tmp_path / "out" / "README.md").read_text()
    )
    # the held-out scores before and after training both reached the run before it was finished, once
    assert sum("eval_rewards/accuracies" in entry for entry in run.logged) == 2 and run.finished == 1
    assert len(ended) == 1
