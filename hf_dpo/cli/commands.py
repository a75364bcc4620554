"""The ``eval``, ``sweep``, ``inspect`` and ``env`` sub-commands of ``hf-dpo``: their flags here, their work in
:mod:`~hf_dpo.tools.evaluation`, :mod:`~hf_dpo.tools.sweep`, :mod:`~hf_dpo.tools.inspection` and
:mod:`~hf_dpo.tools.environment`, imported only when the
command runs (``hf-dpo plot`` should not pay for loading torch)::

    hf-dpo eval --help
"""

from __future__ import annotations

import argparse
import difflib
import re
from typing import TYPE_CHECKING, Any

from hf_dpo.config.recipe import UserError

if TYPE_CHECKING:
    from hf_dpo.tools.sweep import TrainFromFlags


class OneLineParser(argparse.ArgumentParser):
    """A parser whose mistakes are :class:`UserError`\\ s, which ``hf-dpo`` prints as one line with exit status 2
    (argparse would print the whole usage first), and which takes no abbreviated flags: every sub-command reads
    flags as ``hf-dpo train`` does (``--max_step`` is a typo, not ``--max_steps``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:  # a mistyped sub-command or choice: name the closest, as for flags
            options = re.findall(r"'([^']*)'", choice.group(2))
            closest = difflib.get_close_matches(choice.group(1), options, n=1)
            message += f"; did you mean {closest[0]!r}?" if closest else ""
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


class _PassThroughParser(OneLineParser):
    """A sub-command parser that keeps the flags it does not know in ``train_flags`` (``hf-dpo sweep`` hands them to
    ``hf-dpo train``, whose parser checks them), so the top-level parser never sees or drops them."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        namespace, unknown = super().parse_known_args(args, namespace)
        namespace.train_flags = [*(getattr(namespace, "train_flags", None) or []), *unknown]
        return namespace, []


def _run_eval(options: argparse.Namespace) -> int:
    from hf_dpo.tools.evaluation import run

    return run(options)


def _run_sweep(options: argparse.Namespace) -> int:
    from hf_dpo.tools.sweep import run

    return run(options)


def _run_inspect(options: argparse.Namespace) -> int:
    from hf_dpo.tools.inspection import run

    return run(options)


def _run_env(options: argparse.Namespace) -> int:
    from hf_dpo.tools.environment import run

    return run(options)


def add_env_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "env",
        help="versions of Python, torch, transformers, peft, ... and the accelerator, to paste into a bug report",
        description="Print the environment a bug report needs. See hf_dpo/tools/environment.py.",
    )
    parser.set_defaults(run=_run_env)
    return parser


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="preference metrics (and answers side by side) of a trained model or adapter against its reference",
        description="Reward accuracy, margin and win rate against the reference on held-out pairs; with --generate, "
        "answers of both side by side, their lengths and scores. See hf_dpo/tools/evaluation.py.",
    )
    parser.add_argument("model", help="a model (folder or Hub id) or a LoRA adapter folder")
    parser.add_argument("--dataset", required=True, help="as a recipe's dataset_name: Hub id, folder, file, hf_dpo:…")
    parser.add_argument("--dataset_config", default=None, help="the dataset's configuration name")
    parser.add_argument("--split", default="test", help="the held-out split (a single file's rows: any name)")
    parser.add_argument("--max_samples", type=int, default=None, help="only the first N rows of the split")
    parser.add_argument(
        "--ref",
        default=None,
        help="the reference model or adapter; 'none': no reference. Default: an adapter's base model with the "
        "adapters disabled; a full model's base_model from its model card",
    )
    parser.add_argument("--base", default=None, help="the base model of an adapter (default: as its card/config say)")
    parser.add_argument("--output_dir", default=None, help="default: MODEL_OR_ADAPTER/eval, or ./eval")
    for name, kind in (
        ("beta", float),
        ("max_length", int),
        ("max_prompt_length", int),
        ("max_completion_length", int),
    ):
        parser.add_argument(f"--{name}", type=kind, default=None, help="default: the run's model card, else DPO's")
    parser.add_argument("--loss_type", default=None, help="default: the run's model card, else sigmoid")
    parser.add_argument("--truncation_mode", default=None, choices=("keep_end", "keep_start"))
    parser.add_argument("--batch_size", type=int, default=8, help="pairs per forward pass, prompts per generate call")
    parser.add_argument("--dtype", default=None, help="weights dtype: float32, bfloat16, ... (default: the model's)")
    parser.add_argument("--bf16", action="store_true", help="score and generate under bfloat16 autocast")
    parser.add_argument(
        "--generate",
        type=int,
        default=0,
        metavar="N_PROMPTS",
        help="answer the first N_PROMPTS prompts of the split with both models, side by side (--max_new_tokens is "
        "the answers' length limit)",
    )
    parser.add_argument("--max_new_tokens", type=int, default=64, help="the answer length limit")
    parser.add_argument("--do_sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0, help="with --do_sample")
    parser.add_argument("--top_p", type=float, default=1.0, help="with --do_sample")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (the same for policy and reference)")
    parser.add_argument(
        "--scorer",
        nargs="+",
        action="extend",
        default=None,
        metavar="MODULE:FUNCTION",
        help="one or more function(completion, row) -> score, each scoring both models' answers (the demo's: "
        "hf_dpo.tools.scoring:one_sentence hf_dpo.tools.scoring:states_answer)",
    )
    parser.add_argument(
        "--reward_model", default=None, help="a sequence-classification reward model (num_labels=1), one more scorer"
    )
    parser.set_defaults(run=_run_eval)
    return parser


def add_sweep_parser(subparsers: Any, train_from_flags: TrainFromFlags) -> argparse.ArgumentParser:
    """``hf-dpo sweep``, whose every run is ``train_from_flags(flags)``: ``hf-dpo train``'s work, handed down by
    the CLI."""
    original = subparsers._parser_class  # argparse has no per-parser class argument; swap it for this one
    subparsers._parser_class = _PassThroughParser
    try:
        parser = subparsers.add_parser(
            "sweep",
            help="one training run per value of --beta / --loss_type / --rpo_alpha / --learning_rate, one shared "
            "reference pass, one comparison plot",
            description="Train RECIPE once per value (other flags go to every run, as in hf-dpo train); the "
            "reference log-probs are computed once and cached. See hf_dpo/tools/sweep.py.",
        )
    finally:
        subparsers._parser_class = original
    parser.add_argument("recipe", help="a recipe YAML, as hf-dpo train takes")
    parser.add_argument("--beta", type=float, nargs="+", default=None, help="β values, e.g. 0.01 0.1 0.5")
    parser.add_argument("--loss_type", nargs="+", default=None, help="loss types, e.g. sigmoid ipo")
    parser.add_argument("--rpo_alpha", type=float, nargs="+", default=None, help="RPO's α values, e.g. 0 1")
    parser.add_argument("--learning_rate", type=float, nargs="+", default=None, help="learning rates, e.g. 5e-5 1e-4")
    parser.add_argument(
        "--output_dir", default=None, help="the sweep's folder (default: the recipe's output_dir-sweep)"
    )
    # hf-dpo's own --debug, which the pass-through would otherwise hand to train; absent unless given, so it never
    # overwrites the value of the top-level flag
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of errors")
    parser.set_defaults(run=_run_sweep, train_flags=[], train_from_flags=train_from_flags)
    return parser


def add_inspect_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "inspect",
        help="tokenize a few rows exactly as training would, with warnings and length statistics",
        description="Show rows as training tokenizes them (trained tokens marked, BOS/EOS, truncation), warn about "
        "common data mistakes, and summarise lengths. See hf_dpo/tools/inspection.py.",
    )
    parser.add_argument("target", help="a recipe YAML, or a dataset (Hub id, folder, file, hf_dpo:…) with --tokenizer")
    parser.add_argument("--rows", type=int, default=3, help="rows to show")
    parser.add_argument("--scan", type=int, default=2000, help="rows scanned for warnings and statistics")
    parser.add_argument("--split", default=None, help="default: the recipe's train split, or train")
    parser.add_argument("--tokenizer", default=None, help="a model name or folder (default: the recipe's model)")
    for name in ("max_length", "max_prompt_length", "max_completion_length"):
        parser.add_argument(f"--{name}", type=int, default=None, help="default: the recipe's, else DPO's")
    parser.add_argument("--truncation_mode", default=None, choices=("keep_end", "keep_start"))
    parser.add_argument("--batch_size", type=int, default=None, help="pairs per batch for the padding estimate")
    parser.add_argument("--color", default="auto", choices=("auto", "always", "never"), help="colour trained tokens")
    parser.set_defaults(run=_run_inspect)
    return parser


def add_commands(subparsers: Any, train_from_flags: TrainFromFlags | None = None) -> None:
    """Add ``eval``, ``sweep``, ``inspect`` and ``env`` to ``hf-dpo``'s sub-parsers; each parsed namespace carries
    ``run(namespace) -> exit code``. ``sweep`` needs ``train_from_flags`` (``hf-dpo train``'s work from a list of
    flags, :func:`hf_dpo.cli.train.train_from_flags`) and is left out without it."""
    add_eval_parser(subparsers)
    if train_from_flags is not None:
        add_sweep_parser(subparsers, train_from_flags)
    add_inspect_parser(subparsers)
    add_env_parser(subparsers)
