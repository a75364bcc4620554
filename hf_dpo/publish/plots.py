"""Training curves of a run: loss, reward accuracy, reward margin, chosen/rejected rewards and the mean log-ratio, train and eval,
as one PNG.

hf-dpo plot OUTPUT_DIR    # reads OUTPUT_DIR/trainer_state.json, writes OUTPUT_DIR/training.png
"""

from __future__ import annotations

from typing import Any

PANELS = (("loss", "loss"), ("rewards/accuracies", "reward accuracy"), ("rewards/margins", "reward margin"))


def _series(log_history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


# The loss at step 0, where the policy equals its reference, for the losses it is known for without the data:
# log 2 per pair for sigmoid; 1/2 per row for KTO and unpaired APO (with weights 1).
START_LOSS = {
    "sigmoid": (0.6931, "log 2 (start)"),
    "kto": (0.5, "1/2 (start)"),
    "apo_zero_unpaired": (0.5, "1/2 (start)"),
}


def plot_training(log_history: list[dict[str, Any]], path: str, loss_type: str = "sigmoid") -> str:
    """Write the three panels to ``path`` and return it; the loss panel marks where ``loss_type`` starts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_dpo.publish.card_sections import draw_reward_panels

    extra = 2  # chosen/rejected rewards and the mean log-ratio: a margin hides which of the two moved
    figure, axes = plt.subplots(1, len(PANELS) + extra, figsize=(4.2 * (len(PANELS) + extra), 3.4))
    for axis, (key, title) in zip(axes, PANELS):
        for prefix, style in (("", "-"), ("eval_", "o--")):
            steps, values = _series(log_history, prefix + key)
            if steps:
                axis.plot(steps, values, style, label="eval" if prefix else "train", markersize=4)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if key == "loss" and loss_type in START_LOSS:
            value, label = START_LOSS[loss_type]
            axis.axhline(value, color="grey", linewidth=0.8, linestyle=":", label=label)
        axis.legend(fontsize=8)
    draw_reward_panels(axes[len(PANELS) :], log_history)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
