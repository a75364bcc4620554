"""Tools to see what DPO did: ``hf-dpo eval``, ``hf-dpo sweep``, ``hf-dpo inspect``, the samples and doctor callbacks,
and the preference metrics as an ``evaluate`` module.

- :mod:`~hf_dpo.tools.evaluation`: held-out reward accuracy, margin and win rate against the reference; answers side by
  side (``eval/samples.jsonl``, ``eval/samples.html``), scored by a function or a reward model; the run's models
  loaded by :mod:`~hf_dpo.tools.trained_run`;
- :mod:`~hf_dpo.tools.sweep`: one run per β / loss type over one cached reference pass, one comparison plot;
- :mod:`~hf_dpo.tools.inspection`: rows tokenized as training does, data warnings (:mod:`~hf_dpo.tools.data_checks`),
  length statistics;
- :mod:`~hf_dpo.tools.callbacks`: :class:`~hf_dpo.tools.callbacks.SamplesCallback` and
  :class:`~hf_dpo.tools.callbacks.DoctorCallback`;
- :mod:`~hf_dpo.tools.pair_metrics`: the metrics (``preference_metric/`` is the same as an ``evaluate`` module,
  ``compute_metrics`` the trainer's hook);
- :mod:`~hf_dpo.tools.figures`: what ``hf-dpo plot`` and the model card add (reward and KL panels, eval table);
- :mod:`~hf_dpo.tools.splits`: the data splits a command names (``hf-dpo train``'s too).

``hf_dpo.cli`` adds the commands with :func:`add_commands`, ``DPOTrainer`` the callbacks with
:func:`~hf_dpo.tools.callbacks.add_tool_callbacks`. Nothing here imports the trainer or the CLI: the sweep is handed
``hf-dpo train``'s work by the CLI, so the tools sit below both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hf_dpo.tools.commands import add_eval_parser, add_inspect_parser, add_sweep_parser

if TYPE_CHECKING:
    from hf_dpo.tools.sweep import TrainFromFlags


def add_commands(subparsers: Any, train_from_flags: TrainFromFlags | None = None) -> None:
    """Add ``eval``, ``sweep`` and ``inspect`` to ``hf-dpo``'s sub-parsers; each parsed namespace carries
    ``run(namespace) -> exit code``. ``sweep`` needs ``train_from_flags`` (``hf-dpo train``'s work from a list of
    flags, :func:`hf_dpo.cli.train_from_flags`) and is left out without it."""
    add_eval_parser(subparsers)
    if train_from_flags is not None:
        add_sweep_parser(subparsers, train_from_flags)
    add_inspect_parser(subparsers)
