"""``hf-dpo sweep``: one training run per value of the swept knobs (β, the loss type, RPO's α, the learning rate),
all sharing one reference pass.

    hf-dpo sweep recipes/demo.yaml --beta 0.01 0.1 0.5
    hf-dpo sweep recipes/demo.yaml --beta 0.1 0.5 --loss_type sigmoid ipo --max_steps 20   # other flags: as train's
    hf-dpo sweep recipes/demo.yaml --rpo_alpha 0 1

Every run is ``hf-dpo train RECIPE [flags]`` with the swept values set, its own output folder
``SWEEP_DIR/<loss_type>-beta<value>-rpo<value>-lr<value>``, and ``precompute_ref_log_probs=True`` with one
``ref_logps_cache_dir`` (``SWEEP_DIR/ref_logps`` unless the recipe names one): these knobs change nothing the
reference computes, so the first run's reference pass is cached and every later run loads it (see
:mod:`hf_dpo.reference.cache`). Then ``SWEEP_DIR/sweep.png`` draws loss, reward accuracy, margin and the mean
log-ratio per step, one line per run, and ``SWEEP_DIR/sweep.md`` (also printed) tables the final metrics and, when
the recipe scores a task (the demo's format and fact), its checks before and after. SWEEP_DIR is ``--output_dir``,
else the recipe's ``output_dir`` with ``-sweep`` appended.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Callable
from typing import Any

from hf_dpo.config.recipe import UserError

# hf-dpo train's work from its flags (a recipe first) to its summary: hf_dpo.cli.train.train_from_flags, which the CLI hands
# down (the tools sit below the CLI and the trainer, and import neither)
TrainFromFlags = Callable[[list[str]], dict[str, Any]]

PANELS = (
    ("loss", "loss"),
    ("rewards/accuracies", "reward accuracy"),
    ("rewards/margins", "reward margin"),
    ("logps/mean_logratio", "mean log-ratio (policy - reference)"),
)
# The knobs a sweep can vary: flag -> (folder-name prefix, legend name); none changes what the reference computes.
SWEEP_AXES = {
    "loss_type": ("", "loss"),
    "beta": ("beta", "β"),
    "rpo_alpha": ("rpo", "rpo_alpha"),
    "learning_rate": ("lr", "lr"),
}
# The last training log (and the evaluations during training when there is no held-out summary, which holds the
# same numbers measured after the last step)
FINAL_COLUMNS = (
    ("loss", "loss"),
    ("rewards/accuracies", "reward acc"),
    ("rewards/margins", "margin"),
    ("logps/mean_logratio", "mean log-ratio"),
)
EVAL_COLUMNS = (("eval_rewards/accuracies", "eval reward acc"), ("eval_rewards/margins", "eval margin"))
# what hf-dpo train scores on the held-out split after training (its summary), when the recipe has one
SUMMARY_COLUMNS = (("reward_accuracy_after", "held-out reward acc"), ("reward_margin_after", "held-out margin"))


def sweep_points(axes: dict[str, list[Any] | None]) -> list[dict[str, Any]]:
    """Every combination of the swept values (``axes``: flag -> values, ``None`` or empty for an unswept flag), in
    the order given.

    >>> sweep_points({"loss_type": ["sigmoid", "ipo"], "beta": [0.01, 0.1]})
    [{'loss_type': 'sigmoid', 'beta': 0.01}, {'loss_type': 'sigmoid', 'beta': 0.1}, {'loss_type': 'ipo', 'beta': 0.01}, {'loss_type': 'ipo', 'beta': 0.1}]
    >>> sweep_points({"beta": [0.5], "rpo_alpha": None})
    [{'beta': 0.5}]
    """
    swept = {name: values for name, values in axes.items() if values}
    if not swept:
        flags = ", ".join(f"--{name}" for name in SWEEP_AXES)
        raise UserError(f"nothing to sweep: give one or more values to at least one of {flags}")
    return [dict(zip(swept, values)) for values in itertools.product(*swept.values())]


def run_name(point: dict[str, Any]) -> str:
    """A folder name: ``sigmoid-beta0.1``, ``rpo1``.

    >>> run_name({"loss_type": "ipo", "beta": 0.5}), run_name({"beta": 0.01, "rpo_alpha": 1.0})
    ('ipo-beta0.5', 'beta0.01-rpo1')
    """
    return "-".join(
        f"{SWEEP_AXES[name][0]}{value:g}" if name != "loss_type" else str(value) for name, value in point.items()
    )


def run_label(point: dict[str, Any]) -> str:
    """A legend entry: ``ipo, β=0.5``.

    >>> run_label({"loss_type": "ipo", "beta": 0.5, "rpo_alpha": 1.0})
    'ipo, β=0.5, rpo_alpha=1'
    """
    return ", ".join(
        f"{SWEEP_AXES[name][1]}={value:g}" if name != "loss_type" else str(value) for name, value in point.items()
    )


def run_flags(point: dict[str, Any], run_dir: str, cache_dir: str) -> list[str]:
    """The flags that make one run of the sweep (after the user's own, so these win)."""
    flags = [f"--{name}={value}" for name, value in point.items()]
    return [
        *flags,
        f"--output_dir={run_dir}",
        "--precompute_ref_log_probs=true",  # the reference pass runs once, before training...
        "--ref_logps_cache=true",
        f"--ref_logps_cache_dir={cache_dir}",  # ...and lands where the next run finds it
    ]


def final_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The last logged value of each metric of :data:`FINAL_COLUMNS` and :data:`EVAL_COLUMNS`."""
    metrics: dict[str, float] = {}
    for entry in log_history:
        metrics |= {key: entry[key] for key, _ in (*FINAL_COLUMNS, *EVAL_COLUMNS) if key in entry}
    return metrics


def _series(log_history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


def plot_sweep(runs: list[dict[str, Any]], path: str) -> str:
    """Loss, reward accuracy, margin and mean log-ratio per training step, one line per run; writes ``path``."""
    from hf_dpo.publish.plots import pyplot, style_step_axis

    plt = pyplot()
    columns = 2  # a grid, readable where the table's page shows it
    rows = -(-len(PANELS) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    axes = list(grid.flat)
    for axis, (key, title) in zip(axes, PANELS):
        drawn = False
        for run in runs:
            steps, values = _series(run["log_history"], key)
            if steps:
                axis.plot(steps, values, "-o", markersize=3, label=run_label(run["point"]))
                drawn = True
        if key == "loss":
            axis.axhline(0.6931, color="grey", linewidth=0.8, linestyle=":", label="log 2")
        style_step_axis(axis, title, drawn)
    for axis in axes[len(PANELS) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _task_columns(runs: list[dict[str, Any]]) -> list[str]:
    """The task's checks scored by the runs (the demo's format and fact), in their order."""
    names: list[str] = []
    for run in runs:
        names += [name for name in run["summary"].get("task_after", {}) if name not in names]
    return names


def sweep_table(runs: list[dict[str, Any]]) -> str:
    """A Markdown table of the final metrics of every run (columns no run has are left out): the last training log,
    the held-out numbers after training (or, without them, the last evaluation during training), and each task
    check's share after training, with the share before (the starting model's, the same for every run) in its
    header."""
    columns = [(key, label) for key, label in FINAL_COLUMNS if any(key in run["final"] for run in runs)]
    extra = [(key, label) for key, label in SUMMARY_COLUMNS if any(key in run["summary"] for run in runs)]
    if not extra:
        columns += [(key, label) for key, label in EVAL_COLUMNS if any(key in run["final"] for run in runs)]
    checks = _task_columns(runs)
    before = next((run["summary"]["task_before"] for run in runs if "task_before" in run["summary"]), {})
    check_labels = [
        f"{name} after (before: {before[name]:.3f})" if name in before else f"{name} after" for name in checks
    ]
    header = ["run", *(label for _, label in (*columns, *extra)), *check_labels, "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for run in runs:
        values = [run["final"].get(key) for key, _ in columns] + [run["summary"].get(key) for key, _ in extra]
        values += [run["summary"].get("task_after", {}).get(name) for name in checks]
        seconds = run["summary"].get("train_seconds")
        cells = ["" if value is None else f"{value:.4g}" for value in values]
        lines.append(f"| {run['name']} | " + " | ".join([*cells, "" if seconds is None else f"{seconds:.1f}"]) + " |")
    return "\n".join(lines)


def _cli_flags(train_flags: list[str]) -> list[str]:
    """``--use_cpu true`` on a machine without a GPU unless the flags say otherwise: GPU recipes ask for bf16,
    which TrainingArguments refuses on a CPU without it."""
    import torch

    given = any(flag.split("=")[0] == "--use_cpu" for flag in train_flags)
    return train_flags if given or torch.cuda.is_available() else [*train_flags, "--use_cpu=true"]


def sweep(
    recipe: str, points: list[dict[str, Any]], train_flags: list[str], output_dir: str | None, train: TrainFromFlags
) -> dict[str, Any]:
    """Train once per point and return ``{"dir", "runs", "plot", "table"}``; each run is ``train(flags)``, the work
    of ``hf-dpo train`` itself."""
    from hf_dpo.config.run_arguments import parse_train_args

    train_flags = _cli_flags(train_flags)
    _, _, _, base_args = parse_train_args([recipe, *train_flags])  # fails early on a bad recipe or flag
    sweep_dir = output_dir or f"{os.path.normpath(base_args.output_dir)}-sweep"
    cache_dir = base_args.ref_logps_cache_dir or os.path.join(sweep_dir, "ref_logps")
    runs = []
    for point in points:
        name = run_name(point)
        run_dir = os.path.join(sweep_dir, name)
        print(f"\n==> sweep run {len(runs) + 1}/{len(points)}: {name} -> {run_dir}")
        summary = train([recipe, *train_flags, *run_flags(point, run_dir, cache_dir)])
        with open(os.path.join(run_dir, "trainer_state.json"), encoding="utf-8") as file:
            log_history = json.load(file)["log_history"]
        runs.append({"name": name, "point": point, "dir": run_dir, "summary": summary, "log_history": log_history})
        runs[-1]["final"] = final_metrics(log_history)
    plot = plot_sweep(runs, os.path.join(sweep_dir, "sweep.png"))
    table = sweep_table(runs)
    with open(os.path.join(sweep_dir, "sweep.md"), "w", encoding="utf-8") as file:
        file.write(f"# hf-dpo sweep of {recipe}\n\n![sweep](sweep.png)\n\n{table}\n")
    results = [{key: run[key] for key in ("name", "point", "dir", "final")} for run in runs]
    with open(os.path.join(sweep_dir, "sweep.json"), "w", encoding="utf-8") as file:
        json.dump({"recipe": recipe, "flags": train_flags, "runs": results}, file, indent=2, default=str)
    return {"dir": sweep_dir, "runs": runs, "plot": plot, "table": table}


def run(options: argparse.Namespace) -> int:
    """``hf-dpo sweep``: the runs, then the table and where the plot is."""
    from hf_dpo.config.run_arguments import parse_train_args

    flags = list(options.train_flags or [])
    parse_train_args([options.recipe, *flags])  # a typo (--bta) is named before "nothing to sweep" is said
    points = sweep_points({name: getattr(options, name, None) for name in SWEEP_AXES})
    result = sweep(options.recipe, points, flags, options.output_dir, options.train_from_flags)
    print(f"\nhf-dpo sweep: {len(result['runs'])} runs in {result['dir']}\n")
    print(result["table"])
    print(f"\nplot: {result['plot']}; table: {os.path.join(result['dir'], 'sweep.md')}")
    return 0
