"""The demo's part of ``hf-dpo train``'s before/after summary: task accuracy of greedy answers and a few examples.

    hf-dpo train            # recipes/demo.yaml: `task: concise_qa` adds these rows and writes demo_summary.json

``hf_dpo.cli.dispatch`` imports this module only when a recipe names a task.
"""

from __future__ import annotations

from typing import Any

from hf_dpo.demo.tasks import get_checker, score_greedy_answers

SUMMARY_FILE = "demo_summary.json"  # summary.json without a task
# (label, key before training, key after training), printed under the reward-accuracy row
SUMMARY_ROWS = (("task accuracy, greedy (held-out)", "task_accuracy_before", "task_accuracy_after"),)
EXAMPLES_SHOWN = 5


def task_scores(
    stage: str, task: str, model: Any, tokenizer: Any, rows: Any, max_new_tokens: int, bf16: bool = False
) -> dict[str, Any]:
    """``task_accuracy_<stage>`` of greedy answers on ``rows``; after training, also the first answers."""
    accuracy, examples = score_greedy_answers(model, tokenizer, rows, get_checker(task), max_new_tokens, bf16=bf16)
    scores: dict[str, Any] = {f"task_accuracy_{stage}": accuracy}
    if stage == "after":
        scores["examples_after"] = examples[:EXAMPLES_SHOWN]
    return scores


def example_lines(summary: dict[str, Any]) -> list[str]:
    """One line per example answer after training: question, answer, and whether the checker accepted it."""
    return [
        f"  Q: {example['question'][:60]!s:62} A: {example['answer'][:40]!r} {'ok' if example['correct'] else 'x'}"
        for example in summary.get("examples_after", [])
    ]
