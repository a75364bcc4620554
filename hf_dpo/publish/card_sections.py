"""What the tools add to the model card, as functions :mod:`hf_dpo.publish.model_card` calls::

    python -m pytest tests/publish/test_card_sections.py

- :func:`card_sections`: Markdown for the card: the training plot, the last ``hf-dpo eval`` table, the doctor's
  warnings;
- :func:`update_card_eval`: ``hf-dpo eval`` writes its table into the card of the run it evaluated (the card was
  written when training ended, before any evaluation), between markers, so evaluating again replaces it.

A card shows numbers of the weights it sits beside only: ``hf-dpo eval`` records the weight files it evaluated
(:func:`weights_fingerprint`: names, sizes, modification times), and a card written later (a new run into the same
folder, a push) leaves out an evaluation whose weight files have changed since.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

EVAL_ROWS = (
    ("reward accuracy", "reward_accuracy", ".3f"),
    ("reward margin (mean)", "reward_margin", ".3f"),
    ("policy ranks chosen first", "policy_accuracy", ".3f"),
    ("reference ranks chosen first", "reference_accuracy", ".3f"),
    ("win rate vs reference (pairs)", "win_rate", ".3f"),
)


EVAL_BEGIN, EVAL_END = "<!-- hf-dpo eval -->", "<!-- /hf-dpo eval -->"
# The files that hold a saved model's or adapter's weights (Trainer.save_model's names, sharded or not)
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model*.safetensors", "pytorch_model*.bin")


def weights_fingerprint(folder: str) -> list[list[Any]]:
    """``[name, size, modification time in ns]`` of each weight file in ``folder`` (empty: none there). A new save
    rewrites the files, so the fingerprint of an evaluated folder tells whether it still holds the same weights."""
    paths = sorted(
        {path for pattern in WEIGHT_FILES for path in glob.glob(os.path.join(glob.escape(folder), pattern))}
    )
    return [[os.path.basename(path), os.path.getsize(path), os.stat(path).st_mtime_ns] for path in paths]


def read_eval_metrics(eval_dir: str, model_dir: str) -> dict[str, Any] | None:
    """``eval_dir/metrics.json`` if it evaluated the weights now in ``model_dir``, else ``None`` (absent, or written
    for weights since replaced, e.g. by a new run into the same folder)."""
    path = os.path.join(eval_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as file:
        metrics = json.load(file)
    current = weights_fingerprint(model_dir)
    return metrics if current and metrics.get("weights") == current else None


def _eval_table(eval_dir: str, model_dir: str) -> list[str]:
    metrics = read_eval_metrics(eval_dir, model_dir)
    if metrics is None:
        return []
    lines = [
        "## Held-out evaluation",
        "",
        f"`hf-dpo eval` on {metrics.get('pairs', '?')} pairs of {metrics.get('dataset')} (split {metrics.get('split')}), "
        f"against {metrics.get('reference')}, {metrics.get('precision', 'in the weights dtype')} (the evaluations "
        "during training ran in the training's precision, so their margins differ from these by rounding):",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {label} | {metrics[key]:{fmt}} |" for label, key, fmt in EVAL_ROWS if key in metrics]
    if generation := metrics.get("generation"):
        lines += ["", f"Answers to {generation['prompts']} prompts ({generation['settings']}):", ""]
        lines += ["| | trained | reference |", "| --- | --- | --- |"]
        for label, key in (("mean tokens", "mean_tokens"), ("share that hit the limit", "hit_limit")):
            lines.append(f"| {label} | {generation.get(f'policy_{key}', float('nan')):.2f} | "
                         f"{generation.get(f'reference_{key}', float('nan')):.2f} |")  # fmt: skip
        for name, scores in generation.get("scores", {}).items():
            mine, theirs = scores.get("policy_mean", float("nan")), scores.get("reference_mean", float("nan"))
            lines.append(f"| mean score, {name} | {mine:.3f} | {theirs:.3f} |")
    return [*lines, ""]


def doctor_warnings(state: Any) -> dict[str, str]:
    """The doctor's warnings saved in the trainer state (``stateful_callbacks``), by condition."""
    stored = (getattr(state, "stateful_callbacks", None) or {}).get("DoctorCallback", [])
    for entry in stored if isinstance(stored, list) else [stored]:
        if fired := (entry or {}).get("attributes", {}).get("fired"):
            return dict(fired)
    return {}


def card_sections(output_dir: str, state: Any = None) -> list[str]:
    """Markdown lines for the model card of the run in ``output_dir``: its ``training.png``, the table of
    ``eval/metrics.json`` (written by ``hf-dpo eval``), and what the doctor warned about; nothing that is absent."""
    lines: list[str] = []
    if os.path.isfile(os.path.join(output_dir, "training.png")):
        lines += ["## Training curves", "", "![training curves](training.png)", ""]
    lines += _eval_table(os.path.join(output_dir, "eval"), output_dir)
    if warnings := doctor_warnings(state):
        lines += ["## Warnings during training", ""]
        lines += [f"- **{condition}**: {message}" for condition, message in warnings.items()]
        lines.append("")
    return lines


def update_card_eval(card_path: str, eval_dir: str) -> bool:
    """Put the table of ``eval_dir/metrics.json`` into the hf_dpo model card at ``card_path``, replacing the one an
    earlier ``hf-dpo eval`` wrote; returns whether it did (no card, or a card hf_dpo did not write: left alone)."""
    if not os.path.isfile(card_path) or not (table := _eval_table(eval_dir, os.path.dirname(card_path) or ".")):
        return False
    with open(card_path, encoding="utf-8") as file:
        card = file.read()
    if "hf_dpo" not in card.split("---")[1 if card.startswith("---") else 0]:  # the card's front matter tags
        return False
    block = "\n".join([EVAL_BEGIN, *table, EVAL_END])
    if EVAL_BEGIN in card and EVAL_END in card:
        start, end = card.index(EVAL_BEGIN), card.index(EVAL_END) + len(EVAL_END)
        card = card[:start] + block + card[end:]
    elif "## Citation" in card:
        card = card.replace("## Citation", block + "\n\n## Citation", 1)
    else:
        card = card.rstrip("\n") + "\n\n" + block + "\n"
    with open(card_path, "w", encoding="utf-8") as file:
        file.write(card)
    return True
