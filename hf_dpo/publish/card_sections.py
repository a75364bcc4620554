"""What the tools add to ``hf-dpo plot`` and to the model card, as functions :mod:`hf_dpo.publish.plots` and
:mod:`hf_dpo.publish.model_card` call::

    python -m pytest tests/test_tools_figures.py

- :func:`draw_reward_panels`: chosen and rejected rewards on one axis, the mean log-ratio of policy and reference on another (train lines, eval markers);
- :func:`card_sections`: Markdown for the card: the training plot, the last ``hf-dpo eval`` table, the doctor's
  warnings;
- :func:`update_card_eval`: ``hf-dpo eval`` writes its table into the card of the run it evaluated (the card was
  written when training ended, before any evaluation), between markers, so evaluating again replaces it.
"""

from __future__ import annotations

import json
import os
from typing import Any

REWARD_PANEL_TITLES = ("chosen / rejected reward", "mean log-ratio (policy - reference)")
EVAL_ROWS = (
    ("reward accuracy", "reward_accuracy", ".3f"),
    ("reward margin (mean)", "reward_margin", ".3f"),
    ("policy ranks chosen first", "policy_accuracy", ".3f"),
    ("reference ranks chosen first", "reference_accuracy", ".3f"),
    ("win rate vs reference (pairs)", "win_rate", ".3f"),
)


def _series(log_history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


def draw_reward_panels(axes: Any, log_history: list[dict[str, Any]]) -> None:
    """On ``axes[0]`` the chosen and rejected rewards, on ``axes[1]`` the mean log-ratio, per step; training as
    lines, evaluations as markers. A reward curve tells what a margin hides: whether the margin grows because
    chosen rises or because rejected falls (both falling is the likelihood-displacement failure)."""
    reward_axis, kl_axis = axes
    for key, color in (("rewards/chosen", "tab:green"), ("rewards/rejected", "tab:red")):
        for prefix, style in (("", "-"), ("eval_", "o--")):
            steps, values = _series(log_history, prefix + key)
            if steps:
                label = f"{'eval ' if prefix else ''}{key.split('/')[1]}"
                reward_axis.plot(steps, values, style, color=color, label=label, markersize=4)
    reward_axis.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    for prefix, style in (("", "-"), ("eval_", "o--")):
        steps, values = _series(log_history, prefix + "logps/mean_logratio")
        if steps:
            kl_axis.plot(steps, values, style, color="tab:purple", label="eval" if prefix else "train", markersize=4)
    for axis, title in zip(axes, REWARD_PANEL_TITLES):
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)


EVAL_BEGIN, EVAL_END = "<!-- hf-dpo eval -->", "<!-- /hf-dpo eval -->"


def _eval_table(eval_dir: str) -> list[str]:
    path = os.path.join(eval_dir, "metrics.json")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as file:
        metrics = json.load(file)
    lines = [
        "## Held-out evaluation",
        "",
        f"`hf-dpo eval` on {metrics.get('pairs', '?')} pairs of {metrics.get('dataset')} (split {metrics.get('split')}), "
        f"against {metrics.get('reference')}:",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {label} | {metrics[key]:{fmt}} |" for label, key, fmt in EVAL_ROWS if key in metrics]
    if generation := metrics.get("generation"):
        lines += ["", f"Answers to {generation['prompts']} prompts ({generation['settings']}):", ""]
        lines += ["| | trained | reference |", "| --- | --- | --- |"]
        for label, key in (("mean tokens", "mean_tokens"), ("share that hit the limit", "hit_limit")):
            lines.append(f"| {label} | {generation.get(f'policy_{key}', float('nan')):.2f} | "
                         f"{generation.get(f'reference_{key}', float('nan')):.2f} |")  # fmt: skip
        if "policy_mean_score" in generation:
            lines.append(f"| mean score ({generation['scorer']}) | {generation['policy_mean_score']:.3f} | "
                         f"{generation.get('reference_mean_score', float('nan')):.3f} |")  # fmt: skip
    return [*lines, ""]


def doctor_warnings(state: Any) -> dict[str, str]:
    """The doctor's warnings saved in the trainer state (``stateful_callbacks``), by condition."""
    stored = (getattr(state, "stateful_callbacks", None) or {}).get("DoctorCallback", [])
    for entry in stored if isinstance(stored, list) else [stored]:
        if fired := (entry or {}).get("attributes", {}).get("fired"):
            return dict(fired)
    return {}


def card_sections(output_dir: str, state: Any = None) -> list[str]:
    """Markdown lines for the model card of the run in ``output_dir``: its ``training.png``, the table of
    ``eval/metrics.json`` (written by ``hf-dpo eval``), and what the doctor warned about; nothing that is absent."""
    lines: list[str] = []
    if os.path.isfile(os.path.join(output_dir, "training.png")):
        lines += ["## Training curves", "", "![training curves](training.png)", ""]
    lines += _eval_table(os.path.join(output_dir, "eval"))
    if warnings := doctor_warnings(state):
        lines += ["## Warnings during training", ""]
        lines += [f"- **{condition}**: {message}" for condition, message in warnings.items()]
        lines.append("")
    return lines


def update_card_eval(card_path: str, eval_dir: str) -> bool:
    """Put the table of ``eval_dir/metrics.json`` into the hf_dpo model card at ``card_path``, replacing the one an
    earlier ``hf-dpo eval`` wrote; returns whether it did (no card, or a card hf_dpo did not write: left alone)."""
    if not os.path.isfile(card_path) or not (table := _eval_table(eval_dir)):
        return False
    with open(card_path, encoding="utf-8") as file:
        card = file.read()
    if "hf_dpo" not in card.split("---")[1 if card.startswith("---") else 0]:  # the card's front matter tags
        return False
    block = "\n".join([EVAL_BEGIN, *table, EVAL_END])
    if EVAL_BEGIN in card and EVAL_END in card:
        start, end = card.index(EVAL_BEGIN), card.index(EVAL_END) + len(EVAL_END)
        card = card[:start] + block + card[end:]
    elif "## Citation" in card:
        card = card.replace("## Citation", block + "\n\n## Citation", 1)
    else:
        card = card.rstrip("\n") + "\n\n" + block + "\n"
    with open(card_path, "w", encoding="utf-8") as file:
        file.write(card)
    return True
