"""The embedded CPU demo: a concise-answer preference task, run by ``hf-dpo train`` with no recipe.

- ``make_data``: builds ``train.jsonl``/``test.jsonl`` (``python -m hf_dpo.demo.make_data``) and the exact-match
  checker ``is_correct``;
- ``packaged``: the data by its recipe name, ``hf_dpo:concise_qa``;
- ``tasks``: the task registry and greedy scoring before and after training;
- ``summary``: the task rows of the before/after summary and ``demo_summary.json``.

The model is named in recipes/demo.yaml as ``hf_dpo:SmolLM2-135M-Instruct`` (see :mod:`hf_dpo.models.loading`). The core
modules never import this package, and its importers do so inside functions: ``hf_dpo.cli.dispatch`` when a recipe names a
task (and for the closing summary), ``hf_dpo.tools.splits`` for an ``hf_dpo:`` dataset, and ``hf_dpo.tools.scoring``
for the demo's checker as a scorer.
"""
