"""The model card (README.md) written next to a DPO-trained model and pushed with it to the Hub: the values here,
the text in ``hf_dpo/templates/model_card.md``."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Any

import yaml

from hf_dpo.data.preparation import DataStatsCallback
from hf_dpo.models.loading import packaged_name
from hf_dpo.models.packaged import PACKAGED_MODELS
from hf_dpo.models.wrappers import base_model
from hf_dpo.publish.card_sections import card_sections
from hf_dpo.publish.tracker_links import tracker_links
from hf_dpo.publish.vision_card import vision_facts, vision_rows, vision_usage

TEMPLATES_DIR = Path(__file__).parents[1] / "templates"

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
    chat: bool = False,
    trackers: list[tuple[str, str]] | None = None,
    sources: list[tuple[str, int]] | None = None,
    **_: Any,
) -> str:
    """Markdown with YAML metadata describing what was trained, how, on what, and where it ended, rendered from
    ``hf_dpo/templates/model_card.md``.

    ``local_path`` is the folder the card is written to: the usage snippets load from it until the model is pushed
    (``hub_model_id``). ``base_model`` goes into the metadata only when it is a Hub id. ``packaged_copy`` is the
    ``hf_dpo:`` name of the packaged weights training started from (see :mod:`hf_dpo.models.loading`);
    ``base_model`` then names the Hub model they copy, and the card says they differ. ``merged``: the trained
    adapter was merged into the base weights (a plain model). ``extra_sections``: lines placed before the citation
    (the training plot, an ``hf-dpo eval`` table, the doctor's warnings). ``before_after``: ``(label, before,
    after)`` rows measured on the held-out split before and after training (``hf-dpo train``'s table), shown
    first, with ``results_notes`` under them. ``vision``: a vision-language run's facts
    (:func:`~hf_dpo.publish.vision_card.vision_facts`). ``chat``: the tokenizer has a chat template (the quick start
    then prompts with messages). ``trackers``: ``(name, url)`` of the run's tracker pages. ``sources``: ``(dataset,
    rows)`` of each source of a mixed training set.
    """
    datasets = _as_list(dataset)
    method = _method(args.loss_type)
    is_adapter = is_peft and not merged
    base_model = base_model if is_hub_id(base_model) else None
    repo = hub_model_id or local_path or model_name
    values = {
        "metadata": _metadata(base_model, is_adapter, datasets, [*_as_list(tags), *method["tags"]], license, language),
        "model_name": model_name,
        "kind": "a LoRA adapter on "
        if is_adapter
        else "a LoRA fine-tune, merged into "
        if merged
        else "a fine-tune of ",
        "base_model": base_model,
        "method": method,
        "datasets": datasets,
        "packaged": _packaged(packaged_copy),
        "is_adapter": is_adapter,
        "results": [(label, _cell(before), _cell(after)) for label, before, after in before_after or []],
        "results_notes": [f"{note[:1].upper()}{note[1:]}" for note in results_notes or []],
        "repo": repo,
        "vision": bool(vision),
        "chat": chat,
        "usage": vision_usage(repo, base_model, is_adapter) if vision else _usage(repo, is_adapter),
        "packaged_usage": _packaged_usage(repo, packaged_copy)
        if is_adapter and packaged_copy and not vision
        else None,
        "trackers": trackers or [],
        "hyper_parameters": _hyper_parameters(args, reference_kind),
        "vision_facts": vision_rows(vision),
        "sources": sources or [],
        "data_rows": _data_rows(dataset_stats),
        "metric_tables": _metric_tables(log_history),
        "precision": _precision(args),
        "extra_sections": "\n".join(extra_sections or []).strip("\n"),
        "versions": framework_versions(),
    }
    return _template().render(**values)


def _template() -> Any:
    """``hf_dpo/templates/model_card.md`` as a Jinja2 template (jinja2: a dependency of transformers)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,  # a value the template names but the code forgot: an error, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    return environment.get_template("model_card.md")


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` reads as a Hub model id (``org/name``), not a local path or a bare name.

    >>> is_hub_id("org/base"), is_hub_id("/tmp/run/model"), is_hub_id("./model"), is_hub_id("model"), is_hub_id(None)
    (True, False, False, False, False)
    """
    if not name or os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name):
        return False
    return name.count("/") == 1 and all(part.strip() for part in name.split("/"))


def framework_versions() -> dict[str, str]:
    """The versions of the libraries the run used, from their metadata (nothing is imported)."""
    versions = {"hf_dpo": _hf_dpo_version()}
    for name in ("transformers", "torch", "peft", "accelerate", "datasets"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _method(loss_type: str | list[str]) -> dict[str, Any]:
    """The method's name, citation and Hub tags, from the loss type."""
    if "kto" in str(loss_type) or "unpaired" in str(loss_type):
        return {"name": "Kahneman-Tversky Optimization (KTO)", "citation": _KTO_CITATION, "tags": ["kto"]}
    return {"name": "Direct Preference Optimization (DPO)", "citation": _DPO_CITATION, "tags": []}


def _metadata(
    base_model: str | None,
    is_peft: bool,
    datasets: list[str],
    tags: list[str],
    license: str | None,
    language: str | list[str] | None,
) -> str:
    """The YAML front matter the Hub reads (library, tags, base model, datasets, license, language)."""
    metadata: dict[str, Any] = {
        "library_name": "peft" if is_peft else "transformers",
        "tags": sorted({"hf_dpo", "dpo", *tags}),
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
    return yaml.safe_dump(metadata, sort_keys=True).rstrip()


def _packaged(packaged_copy: str | None) -> dict[str, str] | None:
    """What the card says of packaged starting weights (their ``hf_dpo:`` name, the GGUF copy they are)."""
    if packaged_copy not in PACKAGED_MODELS:
        return None
    entry = PACKAGED_MODELS[packaged_copy]
    return {
        "name": packaged_copy,
        "quantization": entry.quantization,
        "hub_id": entry.hub_id,
        "pip_name": entry.pip_name,
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _usage(repo: str, is_peft: bool) -> str:
    """The code that loads the result: the adapter on its base, or the model itself."""
    if is_peft:
        return (
            f'from peft import AutoPeftModelForCausalLM\n\nmodel = AutoPeftModelForCausalLM.from_pretrained("{repo}")'
        )
    return f'from transformers import AutoModelForCausalLM\n\nmodel = AutoModelForCausalLM.from_pretrained("{repo}")'


def _packaged_usage(repo: str, packaged_copy: str) -> str:
    """The adapter on the packaged weights it trained on."""
    return (
        "from peft import PeftModel\n\nfrom hf_dpo.models.loading import load_causal_lm\n\n"
        f'model = PeftModel.from_pretrained(load_causal_lm("{packaged_copy}"), "{repo}")'
    )


def _hyper_parameters(args: Any, reference_kind: str) -> list[tuple[str, Any]]:
    """The DPO and optimisation settings that decide what was learned, ``(name, value)``."""
    return [
        ("loss_type", args.loss_type),
        ("beta", args.beta),
        ("label_smoothing", args.label_smoothing),
        ("rpo_alpha", getattr(args, "rpo_alpha", None)),
        ("reference", _REFERENCE_WORDS.get(reference_kind, reference_kind)),
        ("learning_rate", args.learning_rate),
        ("num_train_epochs", args.num_train_epochs),
        ("per_device_train_batch_size", args.per_device_train_batch_size),
        ("gradient_accumulation_steps", args.gradient_accumulation_steps),
        ("max_length", args.max_length),
        ("max_prompt_length", args.max_prompt_length),
        ("max_completion_length", args.max_completion_length),
        ("truncation_mode", args.truncation_mode),
        ("seed", args.seed),
    ]


def _data_rows(dataset_stats: dict[str, dict[str, Any]]) -> list[tuple[str, int, int, int, int]]:
    """``(split, in, kept, truncated, dropped)`` per prepared split."""
    rows = []
    for split, stats in dataset_stats.items():
        dropped = stats["dropped_no_room"] + stats["dropped_identical"] + (stats.get("dropped_image_cut") or 0)
        rows.append((split, stats["rows_in"], stats["kept"], stats["truncated"], dropped))
    return rows


def _precision(args: Any) -> str:
    """How the run computed, for the tables of its logged numbers."""
    if getattr(args, "bf16", False):
        return "under bfloat16 autocast"
    return "under float16 autocast" if getattr(args, "fp16", False) else "in the weights' dtype"


def _metric_tables(log_history: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """``(title, [(metric, value)])`` of the last logged training rewards and the last evaluation during training
    (an ``hf-dpo eval`` in another precision gives slightly different numbers: the card says which)."""
    tables = []
    for title, prefix in (("Last training log", "rewards/"), ("Last evaluation", "eval_")):
        if metrics := _last_metrics(log_history, prefix):
            rows = [(name, f"{value:.4g}") for name, value in sorted(metrics.items()) if isinstance(value, float)]
            tables.append((title, rows))
    return tables


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
    name = getattr(base_model(model).config, "_name_or_path", None) or None
    return name if is_hub_id(name) else None


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
        chat=bool(getattr(trainer.processing_class, "chat_template", None)),
        trackers=tracker_links(trainer.callback_handler.callbacks),
        **kwargs,
    )
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
