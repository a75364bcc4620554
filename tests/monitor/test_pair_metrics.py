"""The preference metrics: hand-worked numbers, the evaluate module loaded by path (offline), and compute_metrics
in DPOTrainer."""

import os

import evaluate
import numpy as np
import pytest
from tiny import build_model, preference_rows
from transformers import EvalPrediction

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.monitor.pair_metrics import (
    PREFERENCE_METRIC_PATH,
    compute_metrics,
    ranking_metrics,
    reward_metrics,
    win_rate,
)


def test_reward_metrics_by_hand():
    # margins of the preferred column: 2 - 1 = 1, 0 - 0 = 0, 1 - 3 = -2  ->  accuracy 1/3, ties 1/3, margin -1/3
    metrics = reward_metrics([[2.0, 1.0], [0.0, 0.0], [1.0, 3.0]], [0, 0, 0])
    assert metrics == pytest.approx({"reward_accuracy": 1 / 3, "reward_ties": 1 / 3, "reward_margin": -1 / 3})
    # label 1: the second column is the preferred one
    assert reward_metrics([[2.0, 1.0]], [1])["reward_accuracy"] == 0.0


def test_the_pair_win_rate_is_half_when_training_changed_no_ranking():
    margins = [1.0, -2.0, 3.0]
    assert ranking_metrics(margins, margins)["win_rate"] == 0.5
    # the policy fixes pair 1 and breaks nothing: 1 win, 2 ties -> (1 + 2/2) / 3
    assert ranking_metrics([1.0, 2.0, 3.0], margins)["win_rate"] == pytest.approx(2 / 3)
    assert win_rate([])["win_rate"] != win_rate([])["win_rate"]  # NaN: no games


def test_evaluate_loads_the_module_by_path_offline():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    metric = evaluate.load(PREFERENCE_METRIC_PATH, keep_in_memory=True)
    result = metric.compute(
        predictions=[[2.0, 1.0], [0.0, 0.5]],
        references=[0, 0],
        policy_margins=[1.0, 1.0],
        reference_margins=[-1.0, 1.0],
    )
    assert result["reward_accuracy"] == 0.5 and result["reward_margin"] == pytest.approx(0.25)
    assert (result["wins"], result["ties"], result["losses"]) == (1, 1, 0)
    unpaired = metric.compute(predictions=[1.0, -1.0, 2.0], references=[1, 0, 0])
    assert unpaired["reward_accuracy"] == pytest.approx(2 / 3)
    assert unpaired["reward_margin"] == pytest.approx(1.0 - 0.5)  # desirable mean 1.0, undesirable mean 0.5


def test_compute_metrics_takes_the_trainers_predictions(tmp_path, tokenizer):
    args = DPOTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        max_steps=4,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=build_model(tokenizer),
        args=args,
        train_dataset=preference_rows(16),
        eval_dataset=preference_rows(8),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    before = trainer.evaluate()
    assert before["eval_reward_ties"] == 1.0 and before["eval_reward_accuracy"] == 0.0  # policy == reference
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_reward_accuracy"] == after["eval_rewards/accuracies"]
    assert after["eval_reward_margin"] == pytest.approx(after["eval_rewards/margins"], rel=1e-5)


def test_compute_metrics_takes_kto_rows():
    prediction = EvalPrediction(predictions=np.array([0.5, -0.5, 0.2]), label_ids=np.array([1, 0, 0]))
    assert compute_metrics(prediction)["reward_accuracy"] == pytest.approx(2 / 3)
