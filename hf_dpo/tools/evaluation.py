"""``hf-dpo eval``: what a DPO run learned, on held-out pairs, against its reference.

    hf-dpo eval outputs/demo --dataset hf_dpo:concise_qa --generate 80 \\
        --scorer hf_dpo.tools.scoring:one_sentence hf_dpo.tools.scoring:states_answer

MODEL_OR_ADAPTER is a model (folder or Hub id) or a LoRA adapter folder, whose base model is loaded first (the
``base_model_name_or_path`` of its ``adapter_config.json``, or the packaged copy its model card says training
started from, or ``--base``). The reference, unless ``--ref`` names one:

- for an adapter: its base model with the adapters disabled, which is the reference of a LoRA DPO run that
  started from the base model (a run that started from an SFT adapter needs ``--ref SFT_ADAPTER``);
- for a full model: the ``base_model`` its model card names (a Hub id); a run started from a local folder records
  no such name, so pass ``--ref`` (the model before training);
- ``--ref none``: no reference (its log-probs count as 0, as with ``reference_free``).

Pairs are tokenized and batched as training does (:func:`hf_dpo.data.preparation.prepare_dataset`, :class:`hf_dpo.DPODataCollator`)
and scored by the training step itself (:func:`hf_dpo.trainer.step.pair_loss`), with β, the loss type and the length
limits from the flags, else from the run's model card, else the defaults. Writes, in ``--output_dir`` (default:
``MODEL_OR_ADAPTER/eval`` for a local folder, else ``./eval``): ``metrics.json``, ``pairs.jsonl`` (one line per
pair) and with ``--generate N`` ``samples.jsonl`` and ``samples.html``. Evaluating a run's folder into its default
``eval/`` also puts the table into the run's model card (``README.md``, between markers: a new evaluation replaces
it), since the card was written before any evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from hf_dpo.config.recipe import UserError
from hf_dpo.monitor import pair_metrics
from hf_dpo.monitor.generation import Generation, SamplingSettings, generate
from hf_dpo.tools.list_evaluation import generation_rows, list_records, list_summary, list_table_lines
from hf_dpo.tools.trained_run import (
    CARD_FIELDS,
    Models,
    adapter_base,
    eval_arguments,
    load_eval_tokenizer,
    load_models,
)

# ---- pairs --------------------------------------------------------------------------------------------------------


def pair_records(
    models: Models, dataset: Any, tokenizer: Any, args: Any, batch_size: int, autocast_dtype: torch.dtype | None
) -> list[dict[str, Any]]:
    """One record per held-out pair: policy and reference log-probs, implicit rewards, and which model ranks the
    pair right. ``dataset`` holds the raw rows with a ``row`` column (their index in the split)."""
    from hf_dpo.batch import ScoredBatch
    from hf_dpo.data.preparation import prepare_dataset
    from hf_dpo.logprobs import sequence_scores
    from hf_dpo.losses import LossSettings
    from hf_dpo.trainer.step import pair_loss

    prepared, _ = prepare_dataset(dataset, tokenizer, args, "eval")
    rows = prepared["row"]
    prepared = prepared.remove_columns("row")
    collator = pairs_collator(tokenizer, prepared)
    device = next(models.policy.parameters()).device
    records = []
    settings = LossSettings.from_args(args)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with torch.no_grad(), autocast:
        for start in range(0, len(prepared), batch_size):
            columns = collator(list(prepared.select(range(start, min(start + batch_size, len(prepared))))))
            batch = ScoredBatch.from_collated({name: value.to(device) for name, value in columns.items()})
            ref_logps = models.reference(models.policy, batch)  # [2B]: chosen then rejected
            policy, _ = sequence_scores(models.policy, batch)
            _, values = pair_loss(policy, ref_logps, batch, settings)
            ref_chosen, ref_rejected = ref_logps.float().cpu().chunk(2)
            for offset in range(len(ref_chosen)):
                records.append(
                    _pair_record(rows[start + offset], values, offset, ref_chosen[offset], ref_rejected[offset])
                )
    return records


def pairs_collator(tokenizer: Any, prepared: Any) -> Any:
    """Padded rows, as training's precompute pass batches them; with a processor and rows with images, each pair's
    images processed once and read by both its rows."""
    from hf_dpo.batch.padded import DPODataCollator
    from hf_dpo.batch.vision import VisionCollator
    from hf_dpo.data.images import image_column
    from hf_dpo.data.vision import is_processor, text_tokenizer

    collator = DPODataCollator(text_tokenizer(tokenizer).pad_token_id)
    if is_processor(tokenizer) and image_column(prepared.column_names):
        return VisionCollator(collator, tokenizer)
    return collator


def _pair_record(row: int, values: dict[str, torch.Tensor], offset: int, ref_chosen: Any, ref_rejected: Any) -> dict:
    def value(name: str) -> float:
        return float(values[name][offset])

    policy_margin = value("logps/chosen") - value("logps/rejected")
    reference_margin = float(ref_chosen - ref_rejected)
    return {
        "row": row,
        "reward_chosen": value("rewards/chosen"),
        "reward_rejected": value("rewards/rejected"),
        "reward_margin": value("rewards/margins"),
        "logp_chosen": value("logps/chosen"),
        "logp_rejected": value("logps/rejected"),
        "ref_logp_chosen": float(ref_chosen),
        "ref_logp_rejected": float(ref_rejected),
        "outcome": pair_metrics.outcomes([policy_margin > 0], [reference_margin > 0])[0],
    }


def pair_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The shipped ``evaluate`` module's numbers over all pairs (reward accuracy, margin, pair win rate)."""
    if not records:
        return {}
    metric = pair_metrics.load_preference_metric()
    return metric.compute(
        predictions=[[record["reward_chosen"], record["reward_rejected"]] for record in records],
        references=[0] * len(records),
        policy_margins=[record["logp_chosen"] - record["logp_rejected"] for record in records],
        reference_margins=[record["ref_logp_chosen"] - record["ref_logp_rejected"] for record in records],
    ) | {"pairs": len(records)}


# ---- generations --------------------------------------------------------------------------------------------------


def generation_prompts(rows: list[dict[str, Any]], tokenizer: Any, args: Any) -> list[tuple[int, list[int]]]:
    """``(index, prompt ids)`` of rows, tokenized as training tokenizes them (rows with no room left out)."""
    from hf_dpo.data.images import image_column
    from hf_dpo.data.tokenization import DROPPED_NO_ROOM, STATUS_COLUMN, tokenize_row, tokenizer_adds_bos

    if rows and image_column(list(rows[0])):
        raise UserError(
            "--generate answers from the prompts' token ids alone, and these rows hold images: the models would "
            "answer without seeing them; evaluate rows with images without --generate"
        )

    limits = {name: getattr(args, name) for name in CARD_FIELDS[2:]}
    add_bos = tokenizer_adds_bos(tokenizer)
    prompts = []
    for index, row in enumerate(rows):
        tokenized = tokenize_row(row, index, tokenizer, add_bos, **limits)
        if tokenized[STATUS_COLUMN] != DROPPED_NO_ROOM:
            prompts.append((index, tokenized["prompt_input_ids"]))
    return prompts


def prompt_words(prompt: Any) -> str:
    """What a reader wants to see of a prompt: its text, or a conversation's last user turn (not the system
    prompt and template markers every row repeats).

    >>> prompt_words([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}])
    '2+2?'
    """
    from hf_dpo.data.formats import is_conversation

    if not is_conversation(prompt):
        return str(prompt).strip()
    user_turns = [message.get("content") for message in prompt if message.get("role") == "user"]
    return str(user_turns[-1] if user_turns else prompt[-1].get("content")).strip()


def side_by_side(
    models: Models,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    args: Any,
    settings: SamplingSettings,
    autocast_dtype: torch.dtype | None,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """The policy's and the reference's answers to each row's prompt, one record per prompt."""
    prompts = generation_prompts(rows, tokenizer, args)
    ids = [prompt for _, prompt in prompts]
    policy = generate(models.policy, tokenizer, ids, settings, batch_size, autocast_dtype)
    reference: list[Generation | None] = [None] * len(ids)
    if (generator := models.generator_of_reference) is not None:
        with models.reference_context():
            reference = generate(generator, tokenizer, ids, settings, batch_size, autocast_dtype)
    records = []
    for (index, _), mine, theirs in zip(prompts, policy, reference):
        record = {"row": rows[index]["row"], "prompt": prompt_words(rows[index]["prompt"])}
        record |= {"policy": mine.text, "policy_tokens": mine.num_tokens, "policy_hit_limit": mine.hit_limit}
        if theirs is not None:
            record |= {
                "reference": theirs.text,
                "reference_tokens": theirs.num_tokens,
                "reference_hit_limit": theirs.hit_limit,
            }
        records.append(record)
    return records


def sample_summary(records: list[dict[str, Any]], scorers: list[str]) -> dict[str, Any]:
    """Length statistics of both sides and, per scorer, the mean scores and the policy's win rate on answers."""
    summary: dict[str, Any] = {"prompts": len(records)}
    for side in ("policy", "reference"):
        if records and all(side in record for record in records):
            lengths = pair_metrics.length_stats(
                [record[f"{side}_tokens"] for record in records], [record[f"{side}_hit_limit"] for record in records]
            )
            summary |= {f"{side}_{name}": value for name, value in lengths.items()}
    if scorers:
        from hf_dpo.tools.scoring import score_summary

        summary["scores"] = score_summary(records, scorers)
    return summary


# ---- the command --------------------------------------------------------------------------------------------------


def default_output_dir(model: str) -> str:
    return os.path.join(model, "eval") if os.path.isdir(model) else "eval"


def load_rows(options: argparse.Namespace) -> Any:
    """The split to evaluate, with a ``row`` column (each row's index in the split) that survives tokenizing."""
    from hf_dpo.config.run_arguments import DataArguments
    from hf_dpo.tools.splits import load_splits

    data_args = DataArguments(
        dataset_name=options.dataset,
        dataset_config=options.dataset_config,
        dataset_train_split=options.split,  # loaded as the "train" split: a single file has only that one
        dataset_test_split=None,
        max_train_samples=options.max_samples,
    )
    split, _ = load_splits(data_args)
    return split.add_column("row", list(range(len(split))))


def evaluate_run(options: argparse.Namespace) -> dict[str, Any]:
    """Everything ``hf-dpo eval`` computes and writes; returns the metrics (also in ``metrics.json``)."""
    output_dir = options.output_dir or default_output_dir(options.model)
    os.makedirs(output_dir, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorers = _scorers(options, device)  # a mistake in a scorer's name fails before any model loads
    _check_model_names(options)
    args = eval_arguments(options, output_dir)
    models = load_models(options, device)
    tokenizer = load_eval_tokenizer(options.model, adapter_base(options.model, options.base))
    dataset = load_rows(options)
    autocast_dtype = torch.bfloat16 if options.bf16 else None
    lists = "completions" in dataset.column_names  # several answers per prompt: hf_dpo.tools.list_evaluation
    records, summary = (list_records, list_summary) if lists else (pair_records, pair_summary)
    pairs = records(models, dataset, tokenizer, args, options.batch_size, autocast_dtype)
    metrics: dict[str, Any] = {
        "model": options.model,
        "reference": models.reference_words,
        "dataset": options.dataset,
        "split": options.split,
        "beta": args.beta,
        "loss_type": args.loss_type,
        "precision": "bfloat16 autocast" if options.bf16 else f"weights in {options.dtype or 'their saved dtype'}",
        **summary(pairs),
    }
    if os.path.isdir(options.model):
        from hf_dpo.publish.card_sections import weights_fingerprint

        metrics["weights"] = weights_fingerprint(options.model)  # a card shows this table only beside these weights
    _write_jsonl(Path(output_dir) / ("lists.jsonl" if lists else "pairs.jsonl"), pairs)
    if options.generate:
        rows = [dataset[index] for index in range(min(options.generate, len(dataset)))]
        rows = generation_rows(rows, args) if lists else rows
        settings = SamplingSettings(
            options.max_new_tokens, options.do_sample, options.temperature, options.top_p, options.seed
        )
        samples = side_by_side(models, tokenizer, rows, args, settings, autocast_dtype, options.batch_size)
        if scorers:
            from hf_dpo.tools.scoring import add_scores

            add_scores(samples, rows, scorers)
        metrics["generation"] = {"settings": settings.describe(), "scorers": list(scorers)}
        metrics["generation"] |= sample_summary(samples, list(scorers))
        _write_jsonl(Path(output_dir) / "samples.jsonl", samples)
        from hf_dpo.tools.report import samples_html

        (Path(output_dir) / "samples.html").write_text(samples_html(samples, metrics), encoding="utf-8")
    (Path(output_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    if os.path.normpath(output_dir) == os.path.normpath(default_output_dir(options.model)):
        from hf_dpo.publish.card_sections import update_card_eval

        # the card was written when training ended; it carries the evaluation of the run it describes
        metrics["card_updated"] = update_card_eval(os.path.join(options.model, "README.md"), output_dir)
    return metrics


def _check_model_names(options: argparse.Namespace) -> None:
    """A policy, reference or base named by a Hub id that cannot come from the Hub: one line, before any load."""
    from hf_dpo.models.loading import hub_problem

    for flag, name in (("model", options.model), ("--ref", options.ref), ("--base", options.base)):
        if name and name.lower() != "none" and (problem := hub_problem(name)):
            raise UserError(f"{flag}: {problem}")


def _scorers(options: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """name -> ``score(completions, rows) -> scores`` for each ``--scorer`` and the ``--reward_model``."""
    from hf_dpo.tools.scoring import RewardModelScorer, load_scorer, score_with, scorer_names

    specs = options.scorer or []
    if (specs or options.reward_model) and not options.generate:
        raise UserError("--scorer and --reward_model score generated answers: add --generate N")
    scorers: dict[str, Any] = {}
    for name, spec in zip(scorer_names(specs), specs):
        function = load_scorer(spec)
        scorers[name] = lambda completions, rows, function=function: score_with(function, completions, rows)
    if options.reward_model:
        scorers[f"reward model {options.reward_model}"] = RewardModelScorer(options.reward_model, device)
    return scorers


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")


def format_table(metrics: dict[str, Any]) -> str:
    """The short table ``hf-dpo eval`` prints."""
    lines = [
        f"hf-dpo eval: {metrics['model']} against {metrics['reference']}",
        f"{metrics.get('pairs', 0)} held-out pairs ({metrics['dataset']}, split {metrics['split']}), "
        f"beta={metrics['beta']}, loss_type={metrics['loss_type']}",
        "",
        f"{'pairs':40}{'value':>10}",
    ]
    rows = (
        ("reward accuracy", "reward_accuracy"),
        ("reward margin (mean)", "reward_margin"),
        ("pairs with equal rewards", "reward_ties"),
        ("policy ranks chosen first", "policy_accuracy"),
        ("reference ranks chosen first", "reference_accuracy"),
        ("win rate vs reference (pairs)", "win_rate"),
    )
    lines += [f"{label:40}{metrics[key]:>10.3f}" for label, key in rows if key in metrics]
    lines += list_table_lines(metrics)
    if "wins" in metrics:
        lines.append(f"{'':4}won {metrics['wins']}, tied {metrics['ties']}, lost {metrics['losses']}")
    if generation := metrics.get("generation"):
        lines += ["", f"{generation['prompts']} answers of each model ({generation['settings']})"]
        lines.append(f"{'':40}{'policy':>10}{'reference':>11}")
        for label, key, fmt in (
            ("mean tokens", "mean_tokens", ".1f"),
            ("share that hit the limit", "hit_limit", ".2f"),
        ):
            mine, theirs = generation.get(f"policy_{key}"), generation.get(f"reference_{key}")
            if mine is not None:
                theirs_text = format(theirs, fmt) if theirs is not None else "-"
                lines.append(f"{label:40}{mine:>10{fmt}}{theirs_text:>11}")
        for name, scores in generation.get("scores", {}).items():
            theirs = scores.get("reference_mean")
            theirs_text = format(theirs, ".3f") if theirs is not None else "-"
            lines.append(
                f"{'mean score, ' + name:40}{scores.get('policy_mean', float('nan')):>10.3f}{theirs_text:>11}"
            )
            if "wins" in scores:
                lines.append(
                    f"{'':4}answers won {scores['wins']}, tied {scores['ties']}, lost {scores['losses']} against the "
                    "reference's"
                )
    return "\n".join(lines)


def run(options: argparse.Namespace) -> int:
    """``hf-dpo eval``: evaluate, print the table and where the files are."""
    metrics = evaluate_run(options)
    output_dir = options.output_dir or default_output_dir(options.model)
    print(format_table(metrics))
    print(
        f"\nwritten: {output_dir}/metrics.json, {'lists' if 'lists' in metrics else 'pairs'}.jsonl"
        + (", samples.jsonl, samples.html" if options.generate else "")
        + ("; the table is in the model card, README.md" if metrics.get("card_updated") else "")
    )
    return 0
