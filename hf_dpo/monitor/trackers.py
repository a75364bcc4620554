"""A table (the samples' answers) sent to every ``report_to`` integration that takes one: W&B, Comet, MLflow,
TensorBoard (as Markdown) and Trackio."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a Markdown table (TensorBoard renders text summaries as Markdown).

    >>> print(markdown_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    | --- | --- |
    | 1 | x\\|y |
    """

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows])


def _wandb(callback: Any, columns: list[str], rows: list[list[Any]], step: int) -> bool:
    wandb = getattr(callback, "_wandb", None)
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    wandb.log({"samples": wandb.Table(columns=columns, data=rows), "train/global_step": step})
    return True


def _comet(callback: Any, columns: list[str], rows: list[list[Any]], step: int) -> bool:
    experiment = getattr(callback, "_experiment", None)
    if experiment is None:
        return False
    experiment.log_table(f"samples_step{step}.csv", tabular_data=rows, headers=columns)
    return True


def _mlflow(callback: Any, columns: list[str], rows: list[list[Any]], step: int) -> bool:
    mlflow = getattr(callback, "_ml_flow", None)
    if mlflow is None or not getattr(callback, "_initialized", False):
        return False
    data = {name: [row[index] for row in rows] for index, name in enumerate(columns)}
    mlflow.log_table(data=data, artifact_file=f"samples/step_{step}.json")
    return True


def _tensorboard(callback: Any, columns: list[str], rows: list[list[Any]], step: int) -> bool:
    writer = getattr(callback, "tb_writer", None)
    if writer is None:
        return False
    writer.add_text("samples", markdown_table(columns, rows), step)
    return True


def _trackio(callback: Any, columns: list[str], rows: list[list[Any]], step: int) -> bool:
    trackio = getattr(callback, "_trackio", None)
    if trackio is None or not getattr(callback, "_initialized", False):
        return False
    trackio.log({"samples": trackio.Table(columns=columns, data=rows)}, step=step)
    return True


def send_table(callbacks: Sequence[Any], columns: list[str], rows: list[list[Any]], step: int) -> list[str]:
    """Hand the table to every integration callback that can take one; returns their names. A failing integration
    is logged, never raised: samples must not stop a run."""
    sent = []
    for callback in callbacks:
        names = [cls.__name__ for cls in type(callback).__mro__]
        sink = next((TABLE_SINKS[name] for name in names if name in TABLE_SINKS), None)
        if sink is None:
            continue
        try:
            if sink(callback, columns, rows, step):
                sent.append(type(callback).__name__)
        except Exception as error:  # an integration's own failure (network, version) is not the run's
            logger.warning(
                "samples table not sent to %s: %s: %s", type(callback).__name__, type(error).__name__, error
            )
    return sent


# The integrations of transformers that take a table, by their callback's class name, and how to hand them one.
TABLE_SINKS: dict[str, Callable[[Any, list[str], list[list[Any]], int], bool]] = {
    "WandbCallback": _wandb,
    "CometCallback": _comet,
    "MLflowCallback": _mlflow,
    "TensorBoardCallback": _tensorboard,
    "TrackioCallback": _trackio,
}
