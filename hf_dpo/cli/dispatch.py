"""The ``hf-dpo`` command.

    hf-dpo train [RECIPE.yaml] [--field value ...]   # no recipe: the embedded CPU demo (recipes/demo.yaml)
    hf-dpo train --accelerate_config zero3 RECIPE.yaml   # several GPUs, through accelerate launch
    hf-dpo plot OUTPUT_DIR                            # loss / reward accuracy / margins as OUTPUT_DIR/training.png

Every field of `DPOTrainingArguments`, `ModelArguments`, `DataArguments` and `RunArguments` can be set in the
recipe or as a flag; flags override the recipe. A mistake the user can fix (an unknown key or flag, a value of the
wrong type, a missing file, a bad setting, a bad data row) is one line, ``hf-dpo: error: <message>``, and exit
status 2; ``--debug`` (or ``HF_DPO_DEBUG=1``) shows its traceback. Any other exception is a bug and keeps its
traceback.

``train`` is :mod:`hf_dpo.cli.train`; ``eval``, ``sweep`` and ``inspect`` are parsed in :mod:`hf_dpo.cli.commands`
and run by :mod:`hf_dpo.tools` (the sweep is handed :func:`~hf_dpo.cli.train.train_from_flags`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from hf_dpo.cli.commands import (  # eval, sweep, inspect: their flags; their work loads when run
    OneLineParser,
    add_commands,
)
from hf_dpo.cli.launch import relaunch, take_launch_flags
from hf_dpo.cli.train import print_train_help, train_from_flags
from hf_dpo.config.recipe import UserError, unknown_name
from hf_dpo.models.held_back import bitsandbytes_held_back
from hf_dpo.models.upstream_noise import quiet_upstream_logs

logger = logging.getLogger("hf_dpo")

INTERRUPTED_STATUS = 130  # 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C
DEBUG_VARIABLE = "HF_DPO_DEBUG"  # set (not "0"): every error shows its traceback, as --debug does


def plot(output_dir: str) -> str:
    """OUTPUT_DIR/training.png from OUTPUT_DIR/trainer_state.json."""
    from hf_dpo.publish.plots import plot_training

    state = os.path.join(output_dir, "trainer_state.json")
    if not os.path.isfile(state):
        raise UserError(f"{state}: no such file; give the output_dir of a finished run")
    with open(state, encoding="utf-8") as file:
        history = json.load(file)["log_history"]
    return plot_training(history, os.path.join(output_dir, "training.png"))


def is_user_error(error: BaseException) -> bool:
    """The mistakes ``hf-dpo`` reports in one line: its own checks (:class:`UserError`, raised while reading the
    recipe, flags and file names) and bad data rows (``DataFormatError``, raised while the trainer reads them)."""
    errors = sys.modules.get("hf_dpo.data.errors")  # a DataFormatError can only come from an imported module
    return isinstance(error, UserError) or (errors is not None and isinstance(error, errors.DataFormatError))


def is_training_interrupted(error: BaseException) -> bool:
    """Whether ``error`` is the trainer's stop after Ctrl-C (:class:`hf_dpo.trainer.TrainingInterrupted`), which
    can only come from an imported trainer."""
    interrupt = sys.modules.get("hf_dpo.trainer.interrupt")
    return interrupt is not None and isinstance(error, interrupt.TrainingInterrupted)


def interrupted_line(error: Any) -> str:
    """The one line ``hf-dpo train`` ends with after Ctrl-C: the checkpoint written and the command that resumes."""
    if error.checkpoint is None:
        return " ".join(str(error).split())  # no checkpoint (save_strategy="no", or training had ended): as said
    return (
        f"interrupted after step {error.step}; checkpoint saved in {error.checkpoint}. Resume: the same command with "
        f"--resume_from_checkpoint {error.checkpoint} (or --resume_from_checkpoint true: the latest in output_dir)"
    )


def take_debug_flag(flags: list[str]) -> tuple[list[str], bool]:
    """``flags`` without a bare ``--debug``, and whether there was one; ``--debug VALUE`` is TrainingArguments'
    own ``debug`` field and stays."""
    for index, flag in enumerate(flags):
        if flag == "--debug" and (index + 1 == len(flags) or flags[index + 1].startswith("-")):
            return flags[:index] + flags[index + 1 :], True
    return flags, False


def build_parser() -> tuple[argparse.ArgumentParser, Any]:
    """``hf-dpo``'s parser and its sub-parsers; every parser reports a mistake as one line (:class:`OneLineParser`)."""
    parser = OneLineParser(
        prog="hf-dpo",
        description="Direct Preference Optimization on transformers.",
        epilog=f"A mistake in a recipe, a flag or the data is one line and exit status 2; --debug or {DEBUG_VARIABLE}=1 "
        "shows its traceback.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    commands.add_parser("train", help="train from a recipe (none: the CPU demo) and flags", add_help=False)
    plot_parser = commands.add_parser("plot", help="plot loss, reward accuracy and margins of a finished run")
    plot_parser.add_argument("output_dir")
    add_commands(commands, train_from_flags)  # eval, sweep, inspect: their namespaces carry run(namespace) -> status
    return parser, commands


def check_leftovers(commands: Any, command: str, rest: list[str]) -> None:
    """Name what a sub-command other than ``train`` did not take: an unknown flag with the closest of its own (as
    ``train`` names its), or a stray value."""
    options = list(commands.choices[command]._option_string_actions)
    flags = [item.split("=", 1)[0] for item in rest if item.startswith("-")]
    if flags:
        lines = [unknown_name(flag, options, "flag").replace("hf-dpo train", f"hf-dpo {command}") for flag in flags]
        raise UserError("; ".join(lines))
    raise UserError(f"hf-dpo {command}: unexpected argument {rest[0]!r} (see hf-dpo {command} --help)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # until the flags are parsed, a bare --debug anywhere asks for tracebacks (of a mistake in the flags themselves)
    debug = "--debug" in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        parser, commands = build_parser()
        known, rest = parser.parse_known_args(argv)
        rest, debug_flag = take_debug_flag(rest)
        debug = known.debug or debug_flag or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
        if known.command != "train" and rest:
            check_leftovers(commands, known.command, rest)
        if known.command == "train":
            config, launch_flags, rest = take_launch_flags(rest)
            if config is not None:  # several processes: the same command again, under accelerate launch
                return relaunch(config, launch_flags, rest, debug)
        return run_command(known, rest)
    except KeyboardInterrupt as error:
        if debug or not is_training_interrupted(error):
            raise  # Ctrl-C outside training (or a second one): Python's own traceback
        print(f"hf-dpo: {interrupted_line(error)}", file=sys.stderr)
        return INTERRUPTED_STATUS
    except Exception as error:
        if debug or not is_user_error(error):
            raise
        print(f"hf-dpo: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def run_command(known: argparse.Namespace, rest: list[str]) -> int:
    """Run the parsed sub-command (``rest``: the flags of ``train``) and return its exit status."""
    quiet_upstream_logs()  # log lines of upstream libraries no user can act on (hf_dpo.models.upstream_noise)
    if known.command == "plot":
        print(plot(known.output_dir))
        return 0
    if known.command not in ("train", "sweep"):
        return known.run(known)
    # training runs import bitsandbytes only if they quantize (see hf_dpo.models.quantization)
    with bitsandbytes_held_back():
        if known.command == "sweep":
            return known.run(known)
        if "-h" in rest or "--help" in rest:
            print_train_help()
        else:
            train_from_flags(rest, end=True)  # the process's one run: Trainer.end closes its trackers
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
