"""The ``eval``, ``sweep`` and ``inspect`` commands' work (their flags are parsed in :mod:`hf_dpo.cli.commands`).

- :mod:`~hf_dpo.tools.evaluation`: held-out reward accuracy, margin and win rate against the reference; answers side by
  side (``eval/samples.jsonl``, ``eval/samples.html``), scored by a function or a reward model; the run's models
  loaded by :mod:`~hf_dpo.tools.trained_run`;
- :mod:`~hf_dpo.tools.sweep`: one run per β / loss type over one cached reference pass, one comparison plot;
- :mod:`~hf_dpo.tools.inspection`: rows tokenized as training does, data warnings (:mod:`~hf_dpo.tools.data_checks`),
  length statistics;
- :mod:`~hf_dpo.tools.splits`: the data splits a command names (``hf-dpo train``'s too).

Nothing here imports the trainer's command line: the sweep is handed ``hf-dpo train``'s work by the CLI.
"""
