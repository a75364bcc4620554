"""Training curves of a DPO run: loss, reward accuracy and reward margin, train and eval, as one PNG.

hf-dpo plot OUTPUT_DIR    # reads OUTPUT_DIR/trainer_state.json, writes OUTPUT_DIR/training.png
"""

from __future__ import annotations

from typing import Any

PANELS = (("loss", "loss"), ("rewards/accuracies", "reward accuracy"), ("rewards/margins", "reward margin"))


def _series(log_history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


def plot_training(log_history: list[dict[str, Any]], path: str) -> str:
    """Write the three panels to ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    for axis, (key, title) in zip(axes, PANELS):
        for prefix, style in (("", "-"), ("eval_", "o--")):
            steps, values = _series(log_history, prefix + key)
            if steps:
                axis.plot(steps, values, style, label="eval" if prefix else "train", markersize=4)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if key == "loss":
            axis.axhline(0.6931, color="grey", linewidth=0.8, linestyle=":", label="log 2 (start)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
