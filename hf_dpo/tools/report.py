"""A small static HTML page of answers side by side (``hf-dpo eval --generate N`` writes it as
``eval/samples.html``): one self-contained file, no script, readable offline and attachable to an issue::

    python -m pytest tests/tools/test_evaluation.py -k html
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1d1d1f; }
h1 { font-size: 20px; margin: 0 0 4px; } p.meta { color: #555; margin: 2px 0; font-size: 13px; }
table.summary { border-collapse: collapse; margin: 12px 0 20px; font-size: 13px; }
table.summary td, table.summary th { border-bottom: 1px solid #ddd; padding: 4px 12px; text-align: right; }
table.summary td:first-child, table.summary th:first-child { text-align: left; }
table.samples { border-collapse: collapse; width: 100%; table-layout: fixed; font-size: 13px; }
table.samples th { background: #f2f2f4; text-align: left; padding: 6px 8px; }
table.samples td { border-top: 1px solid #ddd; padding: 6px 8px; vertical-align: top; }
td.prompt { color: #333; } td.index { color: #888; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; font-family: ui-monospace, monospace; }
.tag { display: inline-block; font-size: 11px; padding: 1px 6px; border-radius: 8px; margin-top: 4px; }
.limit { background: #fde2e1; color: #9b1c1c; } .len { background: #eef; color: #334; }
.win { background: #e3f6e8; } .loss { background: #fdeceb; }
.score { background: #fff4d6; color: #6b4e00; }
"""


def _answer_cell(record: dict[str, Any], side: str) -> str:
    """One answer with its length, a mark when it hit the limit, and its score under each scorer; with one scorer,
    the side whose answer scored higher is shaded."""
    if side not in record:
        return "<td><em>no reference</em></td>"
    tokens = record[f"{side}_tokens"]
    tags = [f'<span class="tag len">{tokens} token{"" if tokens == 1 else "s"}</span>']
    if record.get(f"{side}_hit_limit"):
        tags.append('<span class="tag limit">hit the limit</span>')
    scores = record.get(f"{side}_scores", {})
    tags += [
        f'<span class="tag score">{escape(name) + " " if len(scores) > 1 else "score "}{value:.3g}</span>'
        for name, value in scores.items()
    ]
    outcomes = list(record.get("outcomes", {}).values())
    outcome = outcomes[0] if len(outcomes) == 1 else None
    won = (outcome == "win" and side == "policy") or (outcome == "loss" and side == "reference")
    css = ' class="win"' if won else ""
    return f"<td{css}><pre>{escape(record[side]) or '<em>(empty)</em>'}</pre>{' '.join(tags)}</td>"


def _summary_rows(metrics: dict[str, Any]) -> list[str]:
    generation = metrics.get("generation", {})
    rows: list[tuple[str, Any, Any]] = [("reward accuracy (pairs)", metrics.get("reward_accuracy"), None)]
    rows.append(("reward margin (pairs, mean)", metrics.get("reward_margin"), None))
    rows.append(("win rate vs reference (pairs)", metrics.get("win_rate"), None))
    for label, key in (("mean tokens", "mean_tokens"), ("share that hit the limit", "hit_limit")):
        rows.append((label, generation.get(f"policy_{key}"), generation.get(f"reference_{key}")))
    for name, scores in generation.get("scores", {}).items():
        rows.append((f"mean score, {name}", scores.get("policy_mean"), scores.get("reference_mean")))
        if "wins" in scores:
            counts = f"won {scores['wins']}, tied {scores['ties']}, lost {scores['losses']}"
            rows.append((f"win rate vs reference, {name} ({counts})", scores.get("win_rate"), None))

    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.2f}"

    return [
        f"<tr><td>{escape(label)}</td><td>{cell(mine)}</td><td>{cell(theirs)}</td></tr>"
        for label, mine, theirs in rows
        if mine is not None
    ]


def samples_html(records: list[dict[str, Any]], metrics: dict[str, Any]) -> str:
    """The page: what was compared, the summary numbers, then one row per prompt (prompt | policy | reference)."""
    generation = metrics.get("generation", {})
    scorers = ", ".join(generation.get("scorers", []))
    rows = [
        "<tr>"
        f'<td class="index">{record["row"]}</td>'
        f'<td class="prompt"><pre>{escape(record["prompt"])}</pre></td>'
        f"{_answer_cell(record, 'policy')}{_answer_cell(record, 'reference')}"
        "</tr>"
        for record in records
    ]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8"><title>hf-dpo eval: samples</title>',
            f"<style>{_STYLE}</style></head><body>",
            f"<h1>{escape(str(metrics.get('model', 'policy')))} vs its reference</h1>",
            f'<p class="meta">reference: {escape(str(metrics.get("reference", "")))}</p>',
            f'<p class="meta">data: {escape(str(metrics.get("dataset", "")))}, split {escape(str(metrics.get("split", "")))}; '
            f"{escape(generation.get('settings', ''))}"
            f"{'; scored by ' + escape(scorers) if scorers else ''}</p>",
            '<table class="summary"><tr><th></th><th>policy</th><th>reference</th></tr>',
            *_summary_rows(metrics),
            "</table>",
            '<table class="samples">',
            '<colgroup><col style="width: 40px"><col style="width: 26%"><col><col></colgroup>',
            "<tr><th>#</th><th>prompt</th><th>policy</th><th>reference</th></tr>",
            *rows,
            "</table></body></html>",
            "",
        ]
    )
