"""The hooks hf-dpo plot and the model card call: reward and mean log-ratio panels, and the card's extra sections
(only an evaluation of the weights beside the card)."""

import json
import time
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from hf_dpo.monitor.doctor import DoctorCallback
from hf_dpo.publish.card_sections import (
    card_sections,
    read_eval_metrics,
    update_card_eval,
    weights_fingerprint,
)
from hf_dpo.publish.plots import draw_reward_panels

HISTORY = [
    {"step": 1, "loss": 0.69, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "logps/mean_logratio": 0.0},
    {"step": 2, "loss": 0.6, "rewards/chosen": 0.2, "rewards/rejected": -0.1, "logps/mean_logratio": 0.4},
    {
        "step": 2,
        "eval_loss": 0.62,
        "eval_rewards/chosen": 0.15,
        "eval_rewards/rejected": -0.05,
        "eval_logps/mean_logratio": 0.3,
    },
    {"step": 3, "loss": 0.5, "rewards/chosen": 0.3, "rewards/rejected": -0.4, "logps/mean_logratio": 0.9},
]


def test_reward_and_log_ratio_panels_draw_train_lines_and_eval_markers(tmp_path):
    figure, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    draw_reward_panels(axes, HISTORY)
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert labels[:4] == ["chosen", "eval chosen", "rejected", "eval rejected"]
    assert [list(line.get_ydata()) for line in axes[1].get_lines()] == [[0.0, 0.4, 0.9], [0.3]]
    figure.tight_layout()
    figure.savefig(tmp_path / "panels.png")
    plt.close(figure)
    assert (tmp_path / "panels.png").stat().st_size > 5_000


def _evaluated_folder(folder):
    """A run folder with weights and the metrics.json ``hf-dpo eval`` writes for them."""
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "eval").mkdir()
    metrics = {"pairs": 80, "dataset": "hf_dpo:concise_qa", "split": "test", "reference": "its base model"}
    metrics |= {"reward_accuracy": 1.0, "reward_margin": 5.06, "win_rate": 0.9, "precision": "bfloat16 autocast"}
    metrics["generation"] = {"prompts": 80, "settings": "greedy, at most 32 new tokens", "scorers": ["s", "t"]}
    metrics["generation"] |= {"policy_mean_tokens": 3.2, "reference_mean_tokens": 14.0, "policy_hit_limit": 0.0}
    metrics["generation"]["reference_hit_limit"] = 0.1
    metrics["generation"]["scores"] = {
        "s": {"policy_mean": 0.375, "reference_mean": 0.0},
        "t": {"policy_mean": 0.5, "reference_mean": 0.75},
    }
    metrics["weights"] = weights_fingerprint(str(folder))
    (folder / "eval" / "metrics.json").write_text(json.dumps(metrics))


def test_card_sections_embed_the_plot_the_eval_table_and_the_doctors_warnings(tmp_path):
    assert card_sections(str(tmp_path)) == []  # nothing to show: nothing added
    (tmp_path / "training.png").write_bytes(b"png")
    _evaluated_folder(tmp_path)
    doctor = DoctorCallback(stuck_steps=1)
    doctor.on_log(SimpleNamespace(loss_type="sigmoid"), SimpleNamespace(global_step=5, max_steps=0), None,
                  {"loss": 0.6931, "rewards/chosen": 0.0, "rewards/rejected": 0.0})  # fmt: skip
    state = SimpleNamespace(stateful_callbacks={"DoctorCallback": doctor.state()})
    text = "\n".join(card_sections(str(tmp_path), state))
    assert "![training curves](training.png)" in text
    assert "| reward accuracy | 1.000 |" in text and "| win rate vs reference (pairs) | 0.900 |" in text
    assert "| mean tokens | 3.20 | 14.00 |" in text
    assert "| mean score, s | 0.375 | 0.000 |" in text and "| mean score, t | 0.500 | 0.750 |" in text
    assert "bfloat16 autocast (the evaluations during training ran in the training's precision" in text
    assert "- **stuck**: step 5: loss 0.6931" in text


def test_an_evaluation_of_replaced_weights_is_left_out_of_the_card(tmp_path):
    """A new run into a folder where hf-dpo eval ran: its eval/metrics.json describes the old weights."""
    _evaluated_folder(tmp_path)
    assert read_eval_metrics(str(tmp_path / "eval"), str(tmp_path)) is not None
    assert "## Held-out evaluation" in "\n".join(card_sections(str(tmp_path)))
    time.sleep(0.01)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"new weights")  # what a new run's save does
    assert read_eval_metrics(str(tmp_path / "eval"), str(tmp_path)) is None
    assert "Held-out evaluation" not in "\n".join(card_sections(str(tmp_path)))
    (tmp_path / "README.md").write_text("---\ntags: [hf_dpo]\n---\n# run\n\n## Citation\n")
    assert not update_card_eval(str(tmp_path / "README.md"), str(tmp_path / "eval"))
    (tmp_path / "adapter_model.safetensors").unlink()  # no weights at all: nothing an evaluation could describe
    assert read_eval_metrics(str(tmp_path / "eval"), str(tmp_path)) is None


def test_an_evaluation_without_a_weights_record_is_left_out(tmp_path):
    """metrics.json of an hf-dpo eval from before weights were recorded: nothing says which weights it measured."""
    _evaluated_folder(tmp_path)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    del metrics["weights"]
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    assert card_sections(str(tmp_path)) == []


def test_a_card_hf_dpo_did_not_write_is_left_alone(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"reward_accuracy": 1.0}))
    (tmp_path / "README.md").write_text("---\ntags: [other]\n---\n# someone's model\n")
    assert not update_card_eval(str(tmp_path / "README.md"), str(tmp_path / "eval"))
    assert (tmp_path / "README.md").read_text() == "---\ntags: [other]\n---\n# someone's model\n"
