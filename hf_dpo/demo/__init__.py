"""The embedded CPU demo: a concise-answer preference task, run by ``hf-dpo train`` with no recipe.

- ``make_data``: builds ``train.jsonl``/``test.jsonl`` (one sentence preferred over chatter) and ``bare_qa/`` (the
  bare answer preferred: the earlier demo) with ``python -m hf_dpo.demo.make_data``;
- ``checks``: the two checks of an answer, format (one sentence, what the demo teaches) and fact (the right answer
  anywhere in it), and the bare-answer exact match;
- ``make_lists``: the same questions with four answers of graded quality each (``lists/``, ``python -m
  hf_dpo.demo.make_lists``), for the list losses;
- ``packaged``: the data by its recipe names, ``hf_dpo:concise_qa``, ``hf_dpo:bare_qa`` and
  ``hf_dpo:concise_qa_lists``;
- ``tasks``: the task registry (each task names its checks) and greedy scoring before and after training;
- ``summary``: the task rows of the before/after summary, ``demo_summary.json`` and ``demo_answers.jsonl``.

The model is named in recipes/demo.yaml as ``hf_dpo:SmolLM2-135M-Instruct`` (see :mod:`hf_dpo.models.loading`). The core
modules never import this package, and its importers do so inside functions: ``hf_dpo.cli.dispatch`` when a recipe names a
task (and for the closing summary), ``hf_dpo.tools.splits`` for an ``hf_dpo:`` dataset, and ``hf_dpo.tools.scoring``
for the demo's checks as scorers.
"""
