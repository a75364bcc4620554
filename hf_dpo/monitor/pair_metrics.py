"""Preference metrics of a held-out split, as pure functions of per-pair numbers (numpy in, floats out).

The ``evaluate`` module in ``preference_metric/`` (``evaluate.load(PREFERENCE_METRIC_PATH)``), ``hf-dpo eval`` and
:func:`compute_metrics` (the trainer's ``compute_metrics``) all read their numbers from here, so a metric has one
definition::

    python -m pytest tests/test_tools_metrics.py

Definitions, per pair with implicit rewards ``r_w = β(log π(y_w) - log π_ref(y_w))`` and ``r_l`` likewise:

- reward accuracy: share of pairs with ``r_w > r_l`` (ties count as wrong, as in training's
  ``rewards/accuracies``); reward ties: share with ``r_w == r_l`` (every pair before training);
- reward margin: mean of ``r_w - r_l``;
- policy / reference accuracy: share of pairs where that model alone gives the chosen completion the higher
  summed log-prob;
- win rate against the reference: each pair is a game between the trained model and its reference, won by the
  one that ranks the chosen completion first while the other does not; both right or both wrong is a tie, which
  counts half: ``(wins + ties / 2) / pairs``. 0.5 means training changed no ranking, 1.0 that it fixed every pair
  the reference got wrong and broke none.

The same win rate compares scored answers (:func:`score_outcomes`): the policy's answer to a prompt wins when a
scorer or reward model gives it the higher score.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

WIN, TIE, LOSS = "win", "tie", "loss"
# The evaluate module's folder; evaluate.load(<folder>) reads <folder>/<folder name>.py.
PREFERENCE_METRIC_PATH = str(Path(__file__).parent / "preference_metric")


def _paired(predictions: Any, references: Any) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 2]`` rewards and ``[N]`` labels (the column that should win) -> preferred and other rewards."""
    rewards = np.asarray(predictions, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(references, dtype=np.int64).reshape(-1)
    if labels.shape[0] != rewards.shape[0] or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"references must be one label (0 or 1: the preferred column) per pair, got {labels[:8]}")
    rows = np.arange(rewards.shape[0])
    return rewards[rows, labels], rewards[rows, 1 - labels]


def reward_metrics(predictions: Any, references: Any) -> dict[str, float]:
    """Reward accuracy, ties and margin of ``[N, 2]`` implicit rewards whose label says which column was preferred.

    >>> reward_metrics([[1.0, 0.0], [0.0, 0.0], [0.5, 2.5], [3.0, 1.0]], [0, 0, 0, 1])
    {'reward_accuracy': 0.25, 'reward_ties': 0.25, 'reward_margin': -0.75}
    """
    preferred, other = _paired(predictions, references)
    if preferred.size == 0:
        return {}
    return {
        "reward_accuracy": float((preferred > other).mean()),
        "reward_ties": float((preferred == other).mean()),
        "reward_margin": float((preferred - other).mean()),
    }


def unpaired_reward_metrics(predictions: Any, references: Any) -> dict[str, float]:
    """KTO rows (one reward each, label 1 = desirable): accuracy is the share whose reward has the label's sign
    (> 0 desirable, < 0 undesirable); the margin is mean desirable reward minus mean undesirable reward.

    >>> unpaired_reward_metrics([1.0, -2.0, 0.5, -1.0], [1, 0, 0, 1])
    {'reward_accuracy': 0.5, 'reward_margin': 0.75}
    """
    rewards = np.asarray(predictions, dtype=np.float64).reshape(-1)
    desirable = np.asarray(references).reshape(-1).astype(bool)
    if rewards.size == 0:
        return {}
    right = np.where(desirable, rewards > 0, rewards < 0)
    metrics = {"reward_accuracy": float(right.mean())}
    if desirable.any() and (~desirable).any():
        metrics["reward_margin"] = float(rewards[desirable].mean() - rewards[~desirable].mean())
    return metrics


def outcomes(policy_right: Sequence[bool], reference_right: Sequence[bool]) -> list[str]:
    """Per pair: ``win`` when only the policy ranks it right, ``loss`` when only the reference does, else ``tie``.

    >>> outcomes([True, True, False, False], [True, False, True, False])
    ['tie', 'win', 'loss', 'tie']
    """
    return [
        WIN if mine and not theirs else LOSS if theirs and not mine else TIE
        for mine, theirs in zip(policy_right, reference_right)
    ]


def score_outcomes(policy_scores: Sequence[float], reference_scores: Sequence[float]) -> list[str]:
    """Per prompt: ``win`` when the policy's answer scores higher than the reference's, ``loss`` when lower.

    >>> score_outcomes([1.0, 0.0, 0.5], [0.0, 0.0, 0.7])
    ['win', 'tie', 'loss']
    """
    return [
        WIN if mine > theirs else LOSS if mine < theirs else TIE
        for mine, theirs in zip(policy_scores, reference_scores)
    ]


def win_rate(results: Sequence[str]) -> dict[str, float]:
    """``(wins + ties / 2) / games`` and the counts behind it.

    >>> win_rate(["win", "tie", "loss", "win"])
    {'win_rate': 0.625, 'wins': 2, 'ties': 1, 'losses': 1}
    """
    wins, ties, losses = results.count(WIN), results.count(TIE), results.count(LOSS)
    games = wins + ties + losses
    return {
        "win_rate": (wins + ties / 2) / games if games else float("nan"),
        "wins": wins,
        "ties": ties,
        "losses": losses,
    }


def ranking_metrics(policy_margins: Any, reference_margins: Any) -> dict[str, float]:
    """Policy and reference accuracy and the pair win rate, from each model's ``log p(y_w) - log p(y_l)`` per pair.

    >>> ranking_metrics([2.0, 1.0, -1.0, -2.0], [-1.0, 3.0, 1.0, 1.0])
    {'policy_accuracy': 0.5, 'reference_accuracy': 0.75, 'win_rate': 0.375, 'wins': 1, 'ties': 1, 'losses': 2}
    """
    policy_right = np.asarray(policy_margins, dtype=np.float64).reshape(-1) > 0
    reference_right = np.asarray(reference_margins, dtype=np.float64).reshape(-1) > 0
    if policy_right.size == 0:
        return {}
    return {
        "policy_accuracy": float(policy_right.mean()),
        "reference_accuracy": float(reference_right.mean()),
        **win_rate(outcomes(policy_right.tolist(), reference_right.tolist())),
    }


def length_stats(num_tokens: Sequence[int], hit_limit: Sequence[bool]) -> dict[str, float]:
    """Mean generated tokens and the share of answers that ran into ``max_new_tokens`` without ending.

    >>> length_stats([3, 5, 16, 8], [False, False, True, False])
    {'mean_tokens': 8.0, 'hit_limit': 0.25}
    """
    if not num_tokens:
        return {}
    return {"mean_tokens": float(np.mean(num_tokens)), "hit_limit": float(np.mean(np.asarray(hit_limit, dtype=bool)))}


_METRIC = None


def load_preference_metric() -> Any:
    """The shipped ``evaluate`` module, loaded by path (``evaluate.load`` of a Hub name needs the network)."""
    global _METRIC
    if _METRIC is None:
        import evaluate

        _METRIC = evaluate.load(PREFERENCE_METRIC_PATH, keep_in_memory=True)
    return _METRIC


def compute_metrics(eval_prediction: Any) -> dict[str, float]:
    """A ``compute_metrics`` for :class:`~hf_dpo.DPOTrainer`: its ``prediction_step`` predicts ``[B, 2]`` implicit
    rewards (chosen, rejected) with label 0, or for KTO one reward per row with label 1 for desirable rows.

    ``DPOTrainer(..., compute_metrics=compute_metrics)`` logs ``eval_reward_accuracy``, ``eval_reward_ties`` and
    ``eval_reward_margin`` (the first and last equal the trainer's ``eval_rewards/accuracies`` and
    ``eval_rewards/margins``; ties say how many pairs the policy has not separated yet).
    """
    predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
    return load_preference_metric().compute(predictions=np.asarray(predictions), references=np.asarray(labels))
