"""The model card (README.md) written next to a DPO-trained model and pushed with it to the Hub."""

from __future__ import annotations

import os
from typing import Any

import yaml

import hf_dpo

_DPO_CITATION = """@inproceedings{rafailov2023direct,
  title     = {Direct Preference Optimization: Your Language Model is Secretly a Reward Model},
  author    = {Rafael Rafailov and Archit Sharma and Eric Mitchell and Christopher D. Manning and Stefano Ermon and
               Chelsea Finn},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023}
}"""

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
    dataset: str | list[str] | None = None,
    tags: str | list[str] | None = None,
    license: str | None = None,
    language: str | list[str] | None = None,
    **_: Any,
) -> str:
    """Markdown with YAML metadata describing what was trained, how, on what, and where it ended."""
    metadata: dict[str, Any] = {
        "library_name": "peft" if is_peft else "transformers",
        "tags": sorted({"hf_dpo", "dpo", *_as_list(tags)}),
    }
    if base_model:
        metadata["base_model"] = base_model
    if datasets := _as_list(dataset):
        metadata["datasets"] = datasets
    if license:
        metadata["license"] = license
    if language:
        metadata["language"] = _as_list(language)

    repo = hub_model_id or model_name
    load = (
        f'from peft import AutoPeftModelForCausalLM\n\nmodel = AutoPeftModelForCausalLM.from_pretrained("{repo}")'
        if is_peft
        else f'from transformers import AutoModelForCausalLM\n\nmodel = AutoModelForCausalLM.from_pretrained("{repo}")'
    )
    hyper_parameters = {
        "loss_type": args.loss_type,
        "beta": args.beta,
        "label_smoothing": args.label_smoothing,
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
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=True).rstrip(),
        "---",
        "",
        f"# {model_name}",
        "",
        f"This model is {'a LoRA adapter on ' if is_peft else 'a fine-tune of '}"
        f"{f'[{base_model}](https://huggingface.co/{base_model})' if base_model else 'a base model'}, trained with "
        f"Direct Preference Optimization (DPO) using [hf_dpo](https://pypi.org/project/hf-dpo/) {hf_dpo.__version__}"
        + (f" on {', '.join(metadata['datasets'])}." if "datasets" in metadata else "."),
        "",
        "## Use",
        "",
        "```python",
        load,
        "```",
        "",
        "## Training",
        "",
        "| hyper-parameter | value |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in hyper_parameters.items()),
    ]
    if dataset_stats:
        lines += [
            "",
            "Data preparation (rows):",
            "",
            "| split | in | kept | truncated | dropped |",
            "| --- | --- | --- | --- | --- |",
        ]
        for split, stats in dataset_stats.items():
            dropped = stats["dropped_no_room"] + stats["dropped_identical"]
            lines.append(f"| {split} | {stats['rows_in']} | {stats['kept']} | {stats['truncated']} | {dropped} |")
    for title, prefix in (("Last training log", "rewards/"), ("Last evaluation", "eval_")):
        if metrics := _last_metrics(log_history, prefix):
            lines += ["", f"## {title}", "", "| metric | value |", "| --- | --- |"]
            lines += [
                f"| {name} | {value:.4g} |" for name, value in sorted(metrics.items()) if isinstance(value, float)
            ]
    lines += ["", "## Citation", "", "```bibtex", _DPO_CITATION, "```", ""]
    return "\n".join(lines)


def write_model_card(path: str, trainer: Any, model_name: str, **kwargs: Any) -> None:
    model = trainer.accelerator.unwrap_model(trainer.model)
    is_peft = hasattr(model, "peft_config")
    base = model.get_base_model() if is_peft else model
    base_model = getattr(base.config, "_name_or_path", None) or None
    if base_model and (os.path.isabs(base_model) or os.path.exists(base_model) or base_model.count("/") != 1):
        base_model = None  # a local path means nothing on the Hub
    text = render_model_card(
        model_name=model_name,
        base_model=kwargs.pop("finetuned_from", None) or base_model,
        is_peft=is_peft,
        args=trainer.args,
        reference_kind=trainer.reference.kind,
        log_history=trainer.state.log_history,
        dataset_stats=trainer.dataset_stats
        or next((entry["data_preparation"] for entry in trainer.state.log_history if "data_preparation" in entry), {}),
        hub_model_id=getattr(trainer, "hub_model_id", None) or trainer.args.hub_model_id,
        **kwargs,
    )
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
