"""The demo's part of ``hf-dpo train``'s before/after summary: every check of the task on greedy answers (the demo's:
format and fact), a few example answers, and all answers before and after in ``demo_answers.jsonl``.

    hf-dpo train            # recipes/demo.yaml: `task: concise_qa` adds these rows and writes demo_summary.json

``hf_dpo.cli`` imports this module only when a recipe names a task.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hf_dpo.demo.tasks import get_task, score_greedy_answers

SUMMARY_FILE = "demo_summary.json"  # summary.json without a task
ANSWERS_FILE = "demo_answers.jsonl"  # one line per held-out question: the answers before and after, with verdicts
EXAMPLES_SHOWN = 5


def task_scores(
    stage: str, task: str, model: Any, tokenizer: Any, rows: Any, max_new_tokens: int, bf16: bool = False
) -> dict[str, Any]:
    """``task_<stage>``: the share of greedy answers on ``rows`` that pass each check of ``task``; and
    ``task_answers_<stage>``, every answer with its verdicts (written to :data:`ANSWERS_FILE`, not to the summary)."""
    checks = get_task(task)
    shares, results = score_greedy_answers(
        model, tokenizer, rows, checks, max_new_tokens, bf16=bf16, progress=f"greedy answers, {stage} training"
    )
    scores: dict[str, Any] = {f"task_{stage}": shares, f"task_answers_{stage}": results}
    if stage == "before":
        scores["task"] = {"name": task, "checks": dict(checks.meaning)}
    return scores


def task_rows(summary: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """``(label, before, after)`` per check of the task, for the before/after table."""
    before, after = summary.get("task_before", {}), summary.get("task_after", {})
    names = list(summary.get("task", {}).get("checks", {})) or list(before or after)
    return [(f"{name}, greedy answers (held-out)", before.get(name), after.get(name)) for name in names]


def legend(summary: dict[str, Any]) -> str:
    """What each check verifies, in one line: ``format: one sentence ...; fact: an accepted answer ...``."""
    return "; ".join(f"{name}: {words}" for name, words in summary.get("task", {}).get("checks", {}).items())


def example_lines(summary: dict[str, Any]) -> list[str]:
    """One line per example answer after training: question, answer, and each check's verdict."""
    examples = summary.get("task_examples_after") or summary.get("task_answers_after", [])[:EXAMPLES_SHOWN]
    names = list(summary.get("task", {}).get("checks", {}))
    lines = []
    for example in examples:
        verdicts = " ".join(f"{name} {'ok' if example.get(name) else 'x'}" for name in names)
        lines.append(f"  Q: {example['question'][:44]!s:46} A: {example['answer'][:44]!r:48} {verdicts}")
    return lines


def write_answers(summary: dict[str, Any], output_dir: str) -> str | None:
    """Move the answers out of ``summary`` into ``output_dir/demo_answers.jsonl`` (before and after side by side)
    and return its path; ``None`` when no task was scored."""
    before, after = summary.pop("task_answers_before", None), summary.pop("task_answers_after", None)
    if before is None and after is None:
        return None
    summary["task_examples_after"] = (after or [])[:EXAMPLES_SHOWN]
    path = os.path.join(output_dir, ANSWERS_FILE)
    names = list(summary.get("task", {}).get("checks", {}))
    with open(path, "w", encoding="utf-8") as file:
        for index, pair in enumerate(zip(before or [None] * len(after), after or [None] * len(before))):
            line: dict[str, Any] = {"row": index}
            for stage, result in zip(("before", "after"), pair):
                if result is not None:
                    line |= {"question": result["question"], "answers": result["answers"]}
                    line[f"answer_{stage}"] = result["answer"]
                    line |= {f"{name}_{stage}": result[name] for name in names}
            file.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path
