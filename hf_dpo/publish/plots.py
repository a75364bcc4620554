"""Training curves of a run as one PNG, a grid readable at a model card's width: loss, reward accuracy, reward
margin, chosen/rejected rewards and the mean log-ratio of policy and reference, train lines and eval markers.

    hf-dpo plot OUTPUT_DIR    # reads OUTPUT_DIR/trainer_state.json, writes OUTPUT_DIR/training.png
"""

from __future__ import annotations

from typing import Any

PANELS = (("loss", "loss"), ("rewards/accuracies", "reward accuracy"), ("rewards/margins", "reward margin"))
REWARD_PANEL_TITLES = ("chosen / rejected reward", "mean log-ratio (policy - reference)")
COLUMNS = 2  # panels per row: a 2-wide grid keeps each panel ~450 px wide where a card shows the image ~900 px wide


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


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, without upstream's font-cache notice
    (:mod:`hf_dpo.models.upstream_noise`)."""
    from hf_dpo.models.upstream_noise import quiet_upstream_logs

    quiet_upstream_logs()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def style_step_axis(axis: Any, title: str, drawn: bool = True) -> None:
    """Title, an integer step axis (steps are whole), a light grid, a legend when anything is labelled, and a word
    where nothing was logged (``drawn`` false), so an empty panel is not read as a flat curve."""
    from matplotlib.ticker import MaxNLocator

    if not drawn:
        axis.text(0.5, 0.5, "nothing logged", ha="center", va="center", color="grey", transform=axis.transAxes)
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)


def draw_reward_panels(axes: Any, log_history: list[dict[str, Any]]) -> None:
    """On ``axes[0]`` the chosen and rejected rewards, on ``axes[1]`` the mean log-ratio, per step; training as
    lines with small markers, evaluations as larger markers (a single point shows either way). A reward curve tells
    what a margin hides: whether the margin grows because chosen rises or because rejected falls (both falling is
    the likelihood-displacement failure)."""
    reward_axis, logratio_axis = axes
    drawn = {0: False, 1: False}
    for key, color in (("rewards/chosen", "tab:green"), ("rewards/rejected", "tab:red")):
        for prefix, style in (("", "-o"), ("eval_", "s--")):
            steps, values = _series(log_history, prefix + key)
            if steps:
                label = f"{'eval ' if prefix else ''}{key.split('/')[1]}"
                reward_axis.plot(steps, values, style, color=color, label=label, markersize=4 if prefix else 2.5)
                drawn[0] = True
    reward_axis.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    for prefix, style in (("", "-o"), ("eval_", "s--")):
        steps, values = _series(log_history, prefix + "logps/mean_logratio")
        if steps:
            label, size = ("eval", 4) if prefix else ("train", 2.5)
            logratio_axis.plot(steps, values, style, color="tab:purple", label=label, markersize=size)
            drawn[1] = True
    for index, (axis, title) in enumerate(zip(axes, REWARD_PANEL_TITLES)):
        style_step_axis(axis, title, drawn[index])


def plot_training(log_history: list[dict[str, Any]], path: str, loss_type: str = "sigmoid") -> str:
    """Write :func:`training_figure` to ``path`` and return it."""
    plt = pyplot()
    figure = training_figure(log_history, loss_type)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def training_figure(log_history: list[dict[str, Any]], loss_type: str = "sigmoid") -> Any:
    """The panels as a matplotlib figure, two to a row; the loss panel marks where ``loss_type`` starts. Every series
    has markers, so a series of one point (one log, one evaluation) shows."""
    plt = pyplot()

    count = len(PANELS) + len(REWARD_PANEL_TITLES)
    rows = -(-count // COLUMNS)
    figure, grid = plt.subplots(rows, COLUMNS, figsize=(4.6 * COLUMNS, 3.3 * rows), squeeze=False)
    axes = list(grid.flat)
    for axis, (key, title) in zip(axes, PANELS):
        drawn = False
        for prefix, style in (("", "-o"), ("eval_", "s--")):
            steps, values = _series(log_history, prefix + key)
            if steps:
                axis.plot(steps, values, style, label="eval" if prefix else "train", markersize=4 if prefix else 2.5)
                drawn = True
        if key == "loss" and loss_type in START_LOSS:
            value, label = START_LOSS[loss_type]
            axis.axhline(value, color="grey", linewidth=0.8, linestyle=":", label=label)
        style_step_axis(axis, title, drawn)
    draw_reward_panels(axes[len(PANELS) : count], log_history)
    for axis in axes[count:]:
        axis.set_visible(False)
    figure.tight_layout()
    return figure
