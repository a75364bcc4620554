"""The ``hf-dpo`` command.

    hf-dpo train [RECIPE.yaml] [--field value ...]   # no recipe: the embedded CPU demo (recipes/demo.yaml)
    hf-dpo plot OUTPUT_DIR                            # loss / reward accuracy / margins as OUTPUT_DIR/training.png

Every field of `DPOTrainingArguments`, `ModelArguments`, `DataArguments` and `RunArguments` can be set in the
recipe or as a flag; flags override the recipe. A mistake the user can fix (an unknown key or flag, a value of the
wrong type, a missing file, a bad setting, a bad data row) is one line, ``hf-dpo: error: <message>``, and exit
status 2; ``--debug`` (or ``HF_DPO_DEBUG=1``) shows its traceback. Any other exception is a bug and keeps its
traceback.

``hf-dpo eval``, ``sweep`` and ``inspect`` come from :mod:`hf_dpo.tools` (the sweep is handed
:func:`train_from_flags`); the trainer is built by :mod:`hf_dpo.cli.build_trainer`, the data splits read by
:mod:`hf_dpo.tools.splits`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from hf_dpo.cli.build_trainer import build_trainer
from hf_dpo.cli.build_trainer import (
    needs_bitsandbytes as needs_bitsandbytes,  # handed on: tests/test_quiet.py imports it here
)
from hf_dpo.cli.commands import add_commands  # eval, sweep, inspect: their flags only; their work loads when run
from hf_dpo.config.recipe import UserError
from hf_dpo.config.run_arguments import DataArguments, ModelArguments, RunArguments, argument_parser, parse_train_args
from hf_dpo.models.upstream_noise import PEFT_OFFLINE_BASE_CONFIG, bitsandbytes_held_back, silenced
from hf_dpo.tools.splits import PACKAGED_PREFIX, load_splits  # benchmarks import DataArguments, load_splits from here

logger = logging.getLogger("hf_dpo")

DEBUG_VARIABLE = "HF_DPO_DEBUG"  # set (not "0"): every error shows its traceback, as --debug does
# A name written as a path, or a dataset_name ending so, is local: a missing one is a mistake, not a Hub id to look up.
PATH_PREFIXES = ("/", "./", "../")
DATA_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt")


def check_inputs(model_args: ModelArguments, data_args: DataArguments) -> None:
    """Fail before anything loads when a model or data file named by path does not exist, or a packaged model's
    package is not installed (the error says what to pip install)."""
    from hf_dpo.models.loading import packaged_file

    for role, name in (
        ("model_name_or_path", model_args.model_name_or_path),
        ("ref_model_name_or_path", model_args.ref_model_name_or_path),
    ):
        if name is None:
            continue
        if name.startswith(PACKAGED_PREFIX):
            try:
                packaged_file(name)
            except (ValueError, ImportError, FileNotFoundError) as error:  # unknown name, package or file missing
                raise UserError(str(error)) from error
        elif name.startswith(PATH_PREFIXES) and not os.path.isdir(name):
            raise UserError(f"{role}={name!r}: no such folder")
    name = data_args.dataset_name
    looks_local = name.lower().endswith(DATA_FILE_SUFFIXES) or name.startswith(PATH_PREFIXES)
    if looks_local and not os.path.exists(os.path.expanduser(name)):
        raise UserError(f"dataset_name={name!r}: no such file or folder")


def check_task(run_args: RunArguments, eval_split: Any) -> None:
    """Fail before any model loads if the task is unknown or has nothing to score."""
    if run_args.task is None:
        return
    from hf_dpo.demo.tasks import get_checker  # the demo's tasks; the core never needs them

    try:
        get_checker(run_args.task)
    except ValueError as error:  # not a task name; the message lists them
        raise UserError(str(error)) from error
    if eval_split is None:
        raise UserError("task scoring needs an evaluation split (dataset_test_split)")


def held_out_scores(trainer: Any, eval_split: Any, run_args: RunArguments, stage: str) -> dict[str, Any]:
    """Reward accuracy (and, after training, margin) on the evaluation split, plus the task's accuracy if any;
    ``stage`` is "before" or "after" and ends each key."""
    if eval_split is None:
        return {}
    metrics = trainer.evaluate()
    scores: dict[str, Any] = {f"reward_accuracy_{stage}": metrics["eval_rewards/accuracies"]}
    if stage == "after":
        scores["reward_margin_after"] = metrics["eval_rewards/margins"]
    if run_args.task is not None:
        from hf_dpo.demo.summary import task_scores

        model, tokenizer = trainer.model, trainer.processing_class
        bf16 = trainer.args.bf16  # generate under the precision training used
        scores |= task_scores(stage, run_args.task, model, tokenizer, eval_split, run_args.task_max_new_tokens, bf16)
    return scores


def fit(trainer: Any) -> dict[str, Any]:
    """Train (resuming if asked), save the model and trainer state, and return the timings and the training
    figures of the last logged step (see :func:`last_train_log`)."""
    with silenced(PEFT_OFFLINE_BASE_CONFIG):  # peft's save_pretrained, at every checkpoint and the final save
        result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
        trainer.save_model(_internal_call=True)  # not pushed yet: the push waits for the card and the plot
    trainer.save_state()
    seconds = result.metrics["train_runtime"]  # the loop, evaluations at eval_steps included
    history = trainer.state.log_history
    evaluating = sum(entry.get("eval_runtime", 0.0) for entry in history)
    steps = trainer.state.global_step
    return {
        "train_seconds": seconds,
        "train_steps": steps,
        "seconds_per_step": max(seconds - evaluating, 0.0) / max(steps, 1),  # the optimizer steps alone
        "eval_seconds_during_training": evaluating,
        "train_loss": result.metrics["train_loss"],
        "last_train_log": last_train_log(history),
    }


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


def write_outputs(trainer: Any, summary: dict[str, Any], dataset: str, run_args: RunArguments) -> None:
    """training.png (adding its path to ``summary``), the model card (which embeds the plot, so after it) and the
    summary JSON, in the output folder."""
    output_dir = trainer.args.output_dir
    if run_args.plot:
        from hf_dpo.publish.plots import plot_training

        loss_type = (
            trainer.args.loss_type if isinstance(trainer.args.loss_type, str) else ",".join(trainer.args.loss_type)
        )
        summary["plot"] = plot_training(trainer.state.log_history, os.path.join(output_dir, "training.png"), loss_type)
    trainer.create_model_card(dataset=dataset)
    summary["summary_file"] = os.path.join(output_dir, summary_file(run_args))
    with open(summary["summary_file"], "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)


def train(model_args: ModelArguments, data_args: DataArguments, run_args: RunArguments, args: Any) -> dict[str, Any]:
    """Score, train, score again; write the model, card, plot and summary; print the summary and return it.

    ``summary["seconds"]`` holds the wall-clock seconds of each part a user waits through: loading (data, model,
    tokenizing), scoring before, training (evaluations during training and saving included), scoring after.
    """
    clock = Stopwatch()
    with clock.part("loading"):
        check_inputs(model_args, data_args)
        train_split, eval_split = load_splits(data_args)
        check_task(run_args, eval_split)
        trainer = build_trainer(model_args, args, train_split, eval_split)
    summary: dict[str, Any] = {"model": model_args.model_name_or_path, "train_rows": len(train_split)}
    if eval_split is not None:
        with clock.part("scoring_before"):
            summary |= held_out_scores(trainer, eval_split, run_args, "before")
    with clock.part("training"):
        summary |= fit(trainer)
    if eval_split is not None:
        with clock.part("scoring_after"):
            summary |= held_out_scores(trainer, eval_split, run_args, "after")
    if trainer.is_world_process_zero():
        summary["seconds"] = clock.seconds
        summary["wall_seconds"] = clock.total()
        write_outputs(trainer, summary, data_args.dataset_name, run_args)
    if args.push_to_hub:  # every process: Trainer's push saves on all of them
        trainer.push_to_hub(merge_adapter=run_args.push_merged, dataset=data_args.dataset_name)
        summary["pushed_to"] = trainer.hub_model_id
    if trainer.is_world_process_zero():
        print_summary(summary, args.output_dir)
    return summary


REWARD_ROW = ("reward accuracy (held-out)", "reward_accuracy_before", "reward_accuracy_after")


def print_summary(summary: dict[str, Any], output_dir: str) -> None:
    """What the run did, whatever it had to score: the before/after table when there was an evaluation split (with
    the demo's task rows and example answers when a task was scored), the last logged training figures, the time of
    each part, and where the outputs went."""
    print("\n".join(["", "=" * 72, *_before_after_lines(summary), _training_line(summary), _time_line(summary)]))
    print(_written_line(summary, output_dir))
    print("=" * 72)


def _before_after_lines(summary: dict[str, Any]) -> list[str]:
    rows, notes = [REWARD_ROW], []
    if "task_accuracy_before" in summary:
        from hf_dpo.demo.summary import SUMMARY_ROWS, example_lines

        rows += SUMMARY_ROWS
        notes = example_lines(summary)
    present = [row for row in rows if row[1] in summary or row[2] in summary]
    if not present:
        return []  # no evaluation split: nothing was scored before and after
    lines = [f"{'':36}{'before':>12}{'after':>12}"]
    for label, before, after in present:
        lines.append(f"{label:36}{summary.get(before, float('nan')):>12.3f}{summary.get(after, float('nan')):>12.3f}")
    if summary.get("reward_accuracy_before") == 0:
        lines.append(
            "  (before training the policy is the reference: every reward is 0, so no pair is ranked right yet)"
        )
    return lines + notes


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
    names += [os.path.basename(summary[key]) for key in ("plot", "summary_file") if key in summary]
    return f"written to {output_dir}: {', '.join(names)}"


def plot(output_dir: str) -> str:
    """OUTPUT_DIR/training.png from OUTPUT_DIR/trainer_state.json."""
    from hf_dpo.publish.plots import plot_training

    state = os.path.join(output_dir, "trainer_state.json")
    if not os.path.isfile(state):
        raise UserError(f"{state}: no such file; give the output_dir of a finished run")
    with open(state, encoding="utf-8") as file:
        history = json.load(file)["log_history"]
    return plot_training(history, os.path.join(output_dir, "training.png"))


def train_from_flags(argv: list[str]) -> dict[str, Any]:
    """``hf-dpo train ARGV`` (``[RECIPE.yaml] [--field value ...]``) from Python; returns its summary. ``hf-dpo
    sweep`` runs it once per point."""
    return train(*parse_train_args(argv))


def print_train_help() -> None:
    argument_parser().print_help()


def is_user_error(error: BaseException) -> bool:
    """The mistakes ``hf-dpo`` reports in one line: its own checks (:class:`UserError`, raised while reading the
    recipe, flags and file names) and bad data rows (``DataFormatError``, raised while the trainer reads them)."""
    formats = sys.modules.get(
        "hf_dpo.data.formats"
    )  # a DataFormatError can only come from an imported hf_dpo.data.formats
    return isinstance(error, UserError) or (formats is not None and isinstance(error, formats.DataFormatError))


def take_debug_flag(flags: list[str]) -> tuple[list[str], bool]:
    """``flags`` without a bare ``--debug``, and whether there was one; ``--debug VALUE`` is TrainingArguments'
    own ``debug`` field and stays."""
    for index, flag in enumerate(flags):
        if flag == "--debug" and (index + 1 == len(flags) or flags[index + 1].startswith("-")):
            return flags[:index] + flags[index + 1 :], True
    return flags, False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="hf-dpo",
        description="Direct Preference Optimization on transformers.",
        epilog=f"A mistake in a recipe, a flag or the data is one line and exit status 2; --debug or {DEBUG_VARIABLE}=1 "
        "shows its traceback.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train from a recipe (none: the CPU demo) and flags", add_help=False)
    plot_parser = commands.add_parser("plot", help="plot loss, reward accuracy and margins of a finished run")
    plot_parser.add_argument("output_dir")
    add_commands(commands, train_from_flags)  # eval, sweep, inspect: their namespaces carry run(namespace) -> status
    known, rest = parser.parse_known_args(argv)
    rest, debug_flag = take_debug_flag(rest)
    if known.command != "train" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    debug = known.debug or debug_flag or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return run_command(known, rest)
    except Exception as error:
        if debug or not is_user_error(error):
            raise
        print(f"hf-dpo: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def run_command(known: argparse.Namespace, rest: list[str]) -> int:
    """Run the parsed sub-command (``rest``: the flags of ``train``) and return its exit status."""
    if known.command == "plot":
        print(plot(known.output_dir))
        return 0
    if known.command != "train":
        return known.run(known)
    with bitsandbytes_held_back():  # imported only if the run quantizes (see hf_dpo.models.upstream_noise)
        if "-h" in rest or "--help" in rest:
            print_train_help()
        else:
            train_from_flags(rest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
