"""What ``hf-dpo train`` prints and writes when a run ends: the before/after table, the last logged training figures,
the time of each part, training.png, the model card and the summary JSON."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from hf_dpo.config.run_arguments import RunArguments

# The training figures the summary reports: (log key, label, format)
TRAIN_FIGURES = (
    ("loss", "loss", ".4f"),
    ("rewards/accuracies", "reward accuracy", ".3f"),
    ("rewards/margins", "reward margin", ".4g"),
)


def last_train_log(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """``step`` and the :data:`TRAIN_FIGURES` of the last training log entry (empty if no step was logged)."""
    for entry in reversed(log_history):
        if "loss" in entry and "step" in entry:
            return {"step": entry["step"]} | {key: entry[key] for key, *_ in TRAIN_FIGURES if key in entry}
    return {}


class Stopwatch:
    """Wall-clock seconds spent in each named part of a run, in the order the parts ran."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - start

    def total(self) -> float:
        return time.perf_counter() - self.started


def summary_file(run_args: RunArguments) -> str:
    if run_args.task is None:
        return "summary.json"
    from hf_dpo.demo.summary import SUMMARY_FILE

    return SUMMARY_FILE


def before_after_rows(summary: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """``(label, before, after)`` of every held-out number measured before and after training: reward accuracy and
    margin (an accuracy of 1.0 at a margin near 0 is no win), then each check of the task, if one was scored."""
    rows = [
        (label, summary.get(f"{key}_before"), summary.get(f"{key}_after"))
        for label, key in (
            ("reward accuracy (held-out pairs)", "reward_accuracy"),
            ("reward margin (mean)", "reward_margin"),
        )
        if f"{key}_before" in summary or f"{key}_after" in summary
    ]
    if "task" in summary:
        from hf_dpo.demo.summary import task_rows

        rows += task_rows(summary)
    return rows


def results_notes(summary: dict[str, Any]) -> list[str]:
    """What the before/after table needs said beside it: why accuracy starts at 0, what each task check verifies."""
    from hf_dpo.monitor.doctor import NEGLIGIBLE_MARGIN

    notes = []
    if summary.get("reward_accuracy_before") == 0:
        notes.append("before training the policy is the reference: every reward is 0, so no pair is ranked right yet")
    accuracy, margin = summary.get("reward_accuracy_after"), summary.get("reward_margin_after")
    if accuracy is not None and margin is not None and accuracy > 0.5 and abs(margin) < NEGLIGIBLE_MARGIN:
        notes.append(
            f"the margin after training is only {margin:.4f}: the pairs lean the right way by almost nothing, and the "
            "policy has barely moved from its reference (a learning rate too small? LoRA wants ~5e-5 to 1e-4)"
        )
    if "task" in summary:
        from hf_dpo.demo.summary import legend

        notes.append(legend(summary))
    return notes


def write_outputs(trainer: Any, summary: dict[str, Any], dataset: str | list[str], run_args: RunArguments) -> None:
    """training.png (adding its path to ``summary``), the model card (which embeds the plot and the before/after
    table, so after it), the task's answers (the demo's) and the summary JSON, in the output folder."""
    output_dir = trainer.args.output_dir
    if run_args.plot:
        from hf_dpo.publish.plots import plot_training

        loss_type = (
            trainer.args.loss_type if isinstance(trainer.args.loss_type, str) else ",".join(trainer.args.loss_type)
        )
        summary["plot"] = plot_training(trainer.state.log_history, os.path.join(output_dir, "training.png"), loss_type)
    trainer.create_model_card(**card_kwargs(summary, dataset))
    if "task" in summary:
        from hf_dpo.demo.summary import write_answers

        summary["answers_file"] = write_answers(summary, output_dir)
    summary["summary_file"] = os.path.join(output_dir, summary_file(run_args))
    with open(summary["summary_file"], "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)


def card_kwargs(summary: dict[str, Any], dataset: str | list[str]) -> dict[str, Any]:
    """What ``create_model_card`` (and ``push_to_hub``, which writes the card again) is given: the data, and the
    before/after table of the run with its notes."""
    return {
        "dataset": dataset,
        "before_after": before_after_rows(summary),
        "results_notes": results_notes(summary),
        "sources": [tuple(source) for source in summary.get("sources", [])],  # rows taken from each mixed dataset
    }


def print_summary(summary: dict[str, Any], output_dir: str) -> None:
    """What the run did, whatever it had to score: the before/after table when there was an evaluation split (with
    the task's checks and example answers when a task was scored), the last logged training figures, the time of
    each part, and where the outputs went."""
    print("\n".join(["", "=" * 72, *_before_after_lines(summary), _training_line(summary), _time_line(summary)]))
    print(_written_line(summary, output_dir))
    print("=" * 72)


def _number(value: float | None) -> str:
    return f"{value:>12.3f}" if value is not None else f"{'-':>12}"


def _before_after_lines(summary: dict[str, Any]) -> list[str]:
    rows = before_after_rows(summary)
    if not rows:
        return []  # no evaluation split: nothing was scored before and after
    lines = [f"{'':40}{'before':>12}{'after':>12}"]
    lines += [f"{label:40}{_number(before)}{_number(after)}" for label, before, after in rows]
    lines += [f"  ({note})" for note in results_notes(summary)]
    if "task" in summary:
        from hf_dpo.demo.summary import example_lines

        lines += example_lines(summary)
    return lines


def _training_line(summary: dict[str, Any]) -> str:
    last = summary.get("last_train_log", {})
    figures = [f"{label} {last[key]:{spec}}" for key, label, spec in TRAIN_FIGURES if key in last]
    if not figures:  # fewer steps than logging_steps: only the run's mean loss is known
        return f"training: mean loss over the run {summary['train_loss']:.4g}"
    return f"training, last logged step ({last['step']}): " + ", ".join(figures)


def _time_line(summary: dict[str, Any]) -> str:
    parts = []
    for name, seconds in summary.get("seconds", {}).items():
        text = f"{name.replace('_', ' ')} {seconds:.0f} s"
        if name == "training":
            evaluating = summary.get("eval_seconds_during_training", 0.0)
            steps = summary["train_steps"]
            text += f" ({steps} step{'s' * (steps != 1)} at {summary['seconds_per_step']:.2f} s/step" + (
                f", evaluating {evaluating:.0f} s)" if evaluating else ")"
            )
        parts.append(text)
    return f"time: {', '.join(parts)}; {summary['wall_seconds']:.0f} s in all"


def _written_line(summary: dict[str, Any], output_dir: str) -> str:
    weights = "adapter" if os.path.isfile(os.path.join(output_dir, "adapter_config.json")) else "model"
    names = [weights, "trainer_state.json", "README.md (model card)"]
    names += [os.path.basename(summary[key]) for key in ("plot", "answers_file", "summary_file") if summary.get(key)]
    return f"written to {output_dir}: {', '.join(names)}"
