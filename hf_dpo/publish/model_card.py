"""The model card (README.md) written next to a DPO-trained model and pushed with it to the Hub."""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import yaml

from hf_dpo.data.preparation import DataStatsCallback
from hf_dpo.models.loading import packaged_name
from hf_dpo.models.packaged import PACKAGED_MODELS
from hf_dpo.models.wrappers import base_model
from hf_dpo.publish.card_sections import card_sections
from hf_dpo.publish.vision_card import vision_facts, vision_lines, vision_usage

_DPO_CITATION = """@inproceedings{rafailov2023direct,
  title     = {Direct Preference Optimization: Your Language Model is Secretly a Reward Model},
  author    = {Rafael Rafailov and Archit Sharma and Eric Mitchell and Christopher D. Manning and Stefano Ermon and
               Chelsea Finn},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023}
}"""

_KTO_CITATION = """@inproceedings{ethayarajh2024kto,
  title     = {Model Alignment as Prospect Theoretic Optimization},
  author    = {Kawin Ethayarajh and Winnie Xu and Niklas Muennighoff and Dan Jurafsky and Douwe Kiela},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning},
  year      = {2024}
}"""


def _hf_dpo_version() -> str:
    """hf_dpo's version, from the installed metadata (read from ``hf_dpo/__init__.py`` at install time, where it is
    written), so this module does not import the package top, which names the trainer above it."""
    try:
        return importlib.metadata.version("hf_dpo")
    except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path, never installed
        return "(from source)"


_REFERENCE_WORDS = {
    "model": "a frozen copy of the starting model",
    "peft_disabled": "the starting model itself, with the LoRA adapters disabled",
    "adapter": "the starting adapter (e.g. an SFT LoRA), frozen, while a copy of it trains",
    "precomputed": "log-probs of the starting model, computed once before training",
    "none": "none (reference-free)",
}


_TIMING = ("_runtime", "_per_second", "_preparation_time")


def _last_metrics(log_history: list[dict[str, Any]], prefix: str) -> dict[str, float]:
    for entry in reversed(log_history):
        if any(key.startswith(prefix) for key in entry):
            return {k: v for k, v in entry.items() if k.startswith(prefix) and not k.endswith(_TIMING)}
    return {}


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def render_model_card(
    *,
    model_name: str,
    base_model: str | None,
    is_peft: bool,
    args: Any,
    reference_kind: str,
    log_history: list[dict[str, Any]],
    dataset_stats: dict[str, dict[str, Any]],
    hub_model_id: str | None = None,
    local_path: str | None = None,
    dataset: str | list[str] | None = None,
    tags: str | list[str] | None = None,
    license: str | None = None,
    language: str | list[str] | None = None,
    packaged_copy: str | None = None,
    merged: bool = False,
    extra_sections: list[str] | None = None,
    before_after: list[tuple[str, float | None, float | None]] | None = None,
    results_notes: list[str] | None = None,
    vision: dict[str, Any] | None = None,
    **_: Any,
) -> str:
    """Markdown with YAML metadata describing what was trained, how, on what, and where it ended.

    ``local_path`` is the folder the card is written to: the usage snippet loads from it until the model is pushed
    (``hub_model_id``). ``packaged_copy`` is the ``hf_dpo:`` name of the packaged weights training started from (see
    :mod:`hf_dpo.models.loading`); ``base_model`` then names the Hub model they copy, and the card says they differ.
    ``merged``: the trained adapter was merged into the base weights (a plain model). ``extra_sections``: lines
    placed before the citation (the training plot, an ``hf-dpo eval`` table, the doctor's warnings).
    ``before_after``: ``(label, before, after)`` rows measured on the held-out split before and after training
    (``hf-dpo train``'s table), shown first, with ``results_notes`` under them. ``vision``: a vision-language run's
    facts (:func:`~hf_dpo.publish.vision_card.vision_facts`).
    """
    datasets = _as_list(dataset)
    kto = "kto" in str(args.loss_type) or "unpaired" in str(args.loss_type)
    is_adapter = is_peft and not merged
    sections = (
        _metadata(base_model, is_adapter, datasets, tags, license, language),
        _intro(model_name, base_model, is_adapter, datasets, packaged_copy, kto, merged),
        _results(before_after or [], results_notes or []),
        vision_usage(hub_model_id or local_path or model_name, base_model, is_adapter)
        if vision
        else _usage(hub_model_id or local_path or model_name, is_adapter, packaged_copy),
        _hyper_parameters(args, reference_kind),
        vision_lines(vision),
        _data_table(dataset_stats),
        _metrics(log_history, _precision(args)),
        ["", *(extra_sections or [])] if extra_sections else [],
        _citation(kto),
    )
    return "\n".join(line for section in sections for line in section)


def _metadata(
    base_model: str | None,
    is_peft: bool,
    datasets: list[str],
    tags: str | list[str] | None,
    license: str | None,
    language: str | list[str] | None,
) -> list[str]:
    """The YAML front matter the Hub reads (library, tags, base model, datasets, license, language)."""
    metadata: dict[str, Any] = {
        "library_name": "peft" if is_peft else "transformers",
        "tags": sorted({"hf_dpo", "dpo", *_as_list(tags)}),
    }
    if base_model:
        metadata["base_model"] = base_model
    # the Hub links these to dataset pages: a packaged (hf_dpo:) name or a local file has none; the intro names them
    if hub_datasets := [name for name in datasets if ":" not in name and not os.path.exists(name)]:
        metadata["datasets"] = hub_datasets
    if license:
        metadata["license"] = license
    if language:
        metadata["language"] = _as_list(language)
    return ["---", yaml.safe_dump(metadata, sort_keys=True).rstrip(), "---", ""]


def _intro(
    model_name: str,
    base_model: str | None,
    is_peft: bool,
    datasets: list[str],
    packaged_copy: str | None,
    kto: bool = False,
    merged: bool = False,
) -> list[str]:
    """Title, what the model is, and, for a packaged start, which weights training really started from."""
    kind = "a LoRA adapter on " if is_peft else "a LoRA fine-tune, merged into " if merged else "a fine-tune of "
    base = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else "a base model"
    on_data = f" on {', '.join(datasets)}." if datasets else "."
    method = "Kahneman-Tversky Optimization (KTO)" if kto else "Direct Preference Optimization (DPO)"
    lines = [
        f"# {model_name}",
        "",
        f"This model is {kind}{base}, trained with {method} using hf_dpo {_hf_dpo_version()}{on_data}",
    ]
    if packaged_copy in PACKAGED_MODELS:
        entry = PACKAGED_MODELS[packaged_copy]
        lines += [
            "",
            f"Training started from `{packaged_copy}`: the GGUF {entry.quantization} copy of {entry.hub_id} shipped "
            f"in the `{entry.pip_name}` package, dequantized. Those weights are close to, not equal to, the Hub's "
            f"{entry.hub_id}, which `base_model` names and which loading {'the adapter' if is_peft else 'it'} "
            "from the Hub brings.",
        ]
    return [*lines, ""]


def _results(rows: list[tuple[str, float | None, float | None]], notes: list[str]) -> list[str]:
    """The held-out numbers before and after training, as ``hf-dpo train`` printed them."""
    if not rows:
        return []

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["## Results", "", "On the held-out split, before and after training:", ""]
    lines += ["| | before | after |", "| --- | --- | --- |"]
    lines += [f"| {label} | {cell(before)} | {cell(after)} |" for label, before, after in rows]
    if notes:
        lines += ["", *(f"- {note[:1].upper()}{note[1:]}." for note in notes)]
    return [*lines, ""]


def _usage(repo: str, is_peft: bool, packaged_copy: str | None) -> list[str]:
    """How to load the result: the adapter on its base, or the model itself."""
    if is_peft:
        code = (
            f'from peft import AutoPeftModelForCausalLM\n\nmodel = AutoPeftModelForCausalLM.from_pretrained("{repo}")'
        )
    else:
        code = (
            f'from transformers import AutoModelForCausalLM\n\nmodel = AutoModelForCausalLM.from_pretrained("{repo}")'
        )
    lines = ["## Use", "", "```python", code, "```", ""]
    if is_peft and packaged_copy:
        lines += [
            "On the exact weights it was trained on:",
            "",
            "```python",
            "from peft import PeftModel\n\nfrom hf_dpo.models.loading import load_causal_lm\n\n"
            f'model = PeftModel.from_pretrained(load_causal_lm("{packaged_copy}"), "{repo}")',
            "```",
            "",
        ]
    return lines


def _hyper_parameters(args: Any, reference_kind: str) -> list[str]:
    """The DPO and optimisation settings that decide what was learned, as a table."""
    values = {
        "loss_type": args.loss_type,
        "beta": args.beta,
        "label_smoothing": args.label_smoothing,
        "rpo_alpha": getattr(args, "rpo_alpha", None),
        "reference": _REFERENCE_WORDS.get(reference_kind, reference_kind),
        "learning_rate": args.learning_rate,
        "num_train_epochs": args.num_train_epochs,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_length": args.max_length,
        "max_prompt_length": args.max_prompt_length,
        "max_completion_length": args.max_completion_length,
        "truncation_mode": args.truncation_mode,
        "seed": args.seed,
    }
    return [
        "## Training",
        "",
        "| hyper-parameter | value |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in values.items()),
    ]


def _data_table(dataset_stats: dict[str, dict[str, Any]]) -> list[str]:
    """Rows in, kept, truncated and dropped per split (nothing when no split was prepared)."""
    if not dataset_stats:
        return []
    lines = [
        "",
        "Data preparation (rows):",
        "",
        "| split | in | kept | truncated | dropped |",
        "| --- | --- | --- | --- | --- |",
    ]
    for split, stats in dataset_stats.items():
        dropped = stats["dropped_no_room"] + stats["dropped_identical"] + (stats.get("dropped_image_cut") or 0)
        lines.append(f"| {split} | {stats['rows_in']} | {stats['kept']} | {stats['truncated']} | {dropped} |")
    return lines


def _precision(args: Any) -> str:
    """How the run computed, for the tables of its logged numbers."""
    if getattr(args, "bf16", False):
        return "under bfloat16 autocast"
    return "under float16 autocast" if getattr(args, "fp16", False) else "in the weights' dtype"


def _metrics(log_history: list[dict[str, Any]], precision: str = "") -> list[str]:
    """The last logged training rewards and the last evaluation during training, as tables, with the precision
    they were computed in (an ``hf-dpo eval`` in another precision gives slightly different numbers)."""
    lines = []
    for title, prefix in (("Last training log", "rewards/"), ("Last evaluation", "eval_")):
        if metrics := _last_metrics(log_history, prefix):
            lines += ["", f"## {title}", ""]
            lines += [f"Logged during training, {precision}:", ""] if precision else []
            lines += ["| metric | value |", "| --- | --- |"]
            lines += [
                f"| {name} | {value:.4g} |" for name, value in sorted(metrics.items()) if isinstance(value, float)
            ]
    return lines


def _citation(kto: bool = False) -> list[str]:
    return ["", "## Citation", "", "```bibtex", _KTO_CITATION if kto else _DPO_CITATION, "```", ""]


def stored_dataset_stats(state: Any) -> dict[str, dict[str, Any]]:
    """The data-preparation counts that `DataStatsCallback` saved in the trainer state (``stateful_callbacks`` of
    trainer_state.json), for a trainer that prepared no data itself, e.g. one rebuilt on tokenized rows and given a
    checkpoint's state."""
    stored = (getattr(state, "stateful_callbacks", None) or {}).get(DataStatsCallback.__name__, [])
    for entry in stored if isinstance(stored, list) else [stored]:
        if stats := entry.get("args", {}).get("stats"):
            return stats
    return {}


def _hub_base_model(model: Any) -> str | None:
    """The Hub id the model (under its adapters) was loaded from; a local path means nothing on the Hub."""
    base = base_model(model)
    name = getattr(base.config, "_name_or_path", None) or None
    if name and (os.path.isabs(name) or os.path.exists(name) or name.count("/") != 1):
        return None
    return name


def write_model_card(path: str, trainer: Any, model_name: str, **kwargs: Any) -> None:
    """Render the card of ``trainer``'s model and write it to ``path`` (README.md of the output folder)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    text = render_model_card(
        model_name=model_name,
        base_model=kwargs.pop("finetuned_from", None) or _hub_base_model(model),
        is_peft=hasattr(model, "peft_config"),
        args=trainer.args,
        reference_kind=trainer.reference.kind,
        log_history=trainer.state.log_history,
        dataset_stats=trainer.dataset_stats or stored_dataset_stats(trainer.state),
        hub_model_id=getattr(trainer, "hub_model_id", None) or trainer.args.hub_model_id,
        local_path=os.path.dirname(path) or ".",
        packaged_copy=packaged_name(model),
        extra_sections=card_sections(os.path.dirname(path) or ".", trainer.state),
        vision=vision_facts(trainer),
        **kwargs,
    )
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
