"""``hf-dpo eval`` on held-out lists of answers: how the trained model ranks each list, against its reference.

    hf-dpo eval outputs/listwise_demo --dataset hf_dpo:concise_qa_lists --split test

Lists are tokenized and batched as training does (:mod:`hf_dpo.data.list_preparation`, one padded row per answer)
and scored by the training step itself (:func:`hf_dpo.trainer.step.list_loss`). Per list, with implicit rewards
``β·(log π - log π_ref)``: the share of its ordered pairs the rewards rank right (``reward_accuracy``, training's
``rewards/accuracies``), whether its best answer comes first (``top1``), Kendall's τ_b against its scores, the best
answers' mean reward minus the others' (``reward_margin``); and the share of its pairs each model alone ranks right
by its summed log-probs (``policy_accuracy``, ``reference_accuracy``). Every number is a mean over lists; the win rate
against the reference is over all ordered pairs, as ``hf-dpo eval`` counts it on pairs. One line per list goes to
``lists.jsonl``. :mod:`hf_dpo.tools.evaluation` hands a split here when it holds a ``completions`` column.
"""

from __future__ import annotations

from typing import Any

import torch

from hf_dpo.monitor import pair_metrics

LIST_ROWS = (  # (label, key) of the lines added to hf-dpo eval's table for lists
    ("best answer ranked first (top-1)", "top1"),
    ("Kendall's tau, rewards vs scores", "kendall_tau"),
)


def list_records(
    models: Any, dataset: Any, tokenizer: Any, args: Any, batch_size: int, autocast_dtype: torch.dtype | None
) -> list[dict[str, Any]]:
    """One record per held-out list (``dataset`` holds the raw rows with a ``row`` column, their index)."""
    from hf_dpo.batch import ScoredBatch
    from hf_dpo.batch.lists import ListDataCollator
    from hf_dpo.data.preparation import prepare_dataset
    from hf_dpo.logprobs import sequence_scores
    from hf_dpo.losses import LossSettings, list_losses, ranking_values
    from hf_dpo.trainer.step import list_logps

    prepared, _ = prepare_dataset(dataset, tokenizer, args, "eval")
    rows = prepared["row"]
    prepared = prepared.remove_columns("row")
    collator = ListDataCollator(tokenizer.pad_token_id)
    device = next(models.policy.parameters()).device
    settings = LossSettings.from_args(args)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    records = []
    with torch.no_grad(), autocast:
        for start in range(0, len(prepared), batch_size):
            columns = collator(list(prepared.select(range(start, min(start + batch_size, len(prepared))))))
            batch = ScoredBatch.from_collated({name: value.to(device) for name, value in columns.items()})
            ref_logps = models.reference(models.policy, batch)
            policy, _ = sequence_scores(models.policy, batch)
            lists = list_logps(policy, ref_logps.float(), batch)
            _, rewards = list_losses(lists, settings)
            valid = lists.valid
            ranked = {
                "": ranking_values(rewards, lists.scores, valid),
                "policy_": ranking_values(lists.policy, lists.scores, valid),
                "reference_": ranking_values(lists.reference, lists.scores, valid),
            }
            for offset in range(valid.shape[0]):
                count = int(valid[offset].sum())
                record = {"row": rows[start + offset], "scores": lists.scores[offset, :count].tolist()}
                record |= {
                    "rewards": rewards[offset, :count].tolist(),
                    "logps": lists.policy[offset, :count].tolist(),
                    "ref_logps": lists.reference[offset, :count].tolist(),
                }
                for prefix, values in ranked.items():
                    record |= {f"{prefix}{name}": float(value[offset]) for name, value in values.items()}
                records.append(record)
    return records


def _pair_outcomes(record: dict[str, Any]) -> list[str]:
    """Win, tie or loss of the policy against the reference on each ordered pair of a list."""
    scores, policy, reference = record["scores"], record["logps"], record["ref_logps"]
    pairs = [(i, j) for i in range(len(scores)) for j in range(len(scores)) if scores[i] > scores[j]]
    return pair_metrics.outcomes(
        [policy[i] > policy[j] for i, j in pairs], [reference[i] > reference[j] for i, j in pairs]
    )


def list_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the held-out lists (see the module docstring), and the counts."""
    if not records:
        return {}

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    margins = []
    for record in records:
        best = max(record["scores"])
        top = [r for r, s in zip(record["rewards"], record["scores"]) if s == best]
        rest = [r for r, s in zip(record["rewards"], record["scores"]) if s != best]
        margins.append(mean(top) - mean(rest))
    outcomes = [outcome for record in records for outcome in _pair_outcomes(record)]
    return {
        "reward_accuracy": mean([record["pair_accuracy"] for record in records]),
        "reward_margin": mean(margins),
        "top1": mean([record["top1"] for record in records]),
        "kendall_tau": mean([record["kendall_tau"] for record in records]),
        "policy_accuracy": mean([record["policy_pair_accuracy"] for record in records]),
        "reference_accuracy": mean([record["reference_pair_accuracy"] for record in records]),
        "policy_top1": mean([record["policy_top1"] for record in records]),
        "reference_top1": mean([record["reference_top1"] for record in records]),
        **pair_metrics.win_rate(outcomes),
        "lists": len(records),
        "answers": sum(len(record["scores"]) for record in records),
        "pairs": len(outcomes),  # the ordered pairs of the lists
    }


def list_table_lines(metrics: dict[str, Any]) -> list[str]:
    """The lines ``hf-dpo eval``'s table adds for lists (nothing for pairs)."""
    if "lists" not in metrics:
        return []
    lines = [f"{label:40}{metrics[key]:>10.3f}" for label, key in LIST_ROWS]
    lines.append(
        f"{'':4}{metrics['lists']} lists, {metrics['answers']} answers; each number a mean over lists (pairs: their "
        f"ordered pairs); top-1 by log-probs: policy {metrics['policy_top1']:.3f}, reference "
        f"{metrics['reference_top1']:.3f}"
    )
    return lines


def generation_rows(rows: list[dict[str, Any]], args: Any) -> list[dict[str, Any]]:
    """List rows as the rows ``hf-dpo eval --generate`` reads (a prompt, two answers to check it by, and every
    other column for a scorer): their best and worst answers as ``chosen`` and ``rejected``."""
    from hf_dpo.data.lists import normalise_list_row

    found = []
    for index, row in enumerate(rows):
        checked, names, scores = normalise_list_row(row, index, args.score_column, args.ranking_column)
        order = sorted(range(len(names)), key=lambda k: -scores[k])
        others = {name: value for name, value in row.items() if name not in ("completions", "scores", "ranking")}
        found.append(
            {
                **others,
                "prompt": checked["prompt"],
                "chosen": checked[names[order[0]]],
                "rejected": checked[names[order[-1]]],
            }
        )
    return found
