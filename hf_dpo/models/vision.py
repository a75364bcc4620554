"""Vision-language models: telling one apart, the class and processor that load one by name, and its vision tower.

A model given by name loads through the auto class its config's type is registered under: a vision-language type
that transformers does not map to ``AutoModelForCausalLM`` (Qwen2-VL, Qwen2.5-VL, Idefics3, SmolVLM, LLaVA, ...)
through ``AutoModelForImageTextToText``; its processing class is then the model's ``AutoProcessor`` (the tokenizer
inside it, with the pad token, for text; its image processor for the images).
"""

from __future__ import annotations

from typing import Any

import torch

from hf_dpo.config.run_arguments import VISION_MODULE_NAMES, VISION_MODULES_PATTERN
from hf_dpo.models.wrappers import base_model

HUB_KWARGS = ("revision", "subfolder", "cache_dir", "token", "trust_remote_code", "local_files_only")


def is_vision_language(model: Any) -> bool:
    """Whether ``model`` (maybe wrapped, or a config) has a vision tower: its config has a ``vision_config``."""
    config = model if not isinstance(model, torch.nn.Module) else getattr(base_model(model), "config", None)
    return getattr(config, "vision_config", None) is not None


def _model_type(name_or_path: str, kwargs: dict[str, Any]) -> str | None:
    from transformers import PretrainedConfig

    if "gguf_file" in kwargs:  # GGUF files hold text models here
        return None
    try:
        config, _ = PretrainedConfig.get_config_dict(name_or_path, **{k: kwargs[k] for k in HUB_KWARGS if k in kwargs})
    except (OSError, ValueError):  # no config.json: from_pretrained reports it in its own words
        return None
    return config.get("model_type")


PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")  # what a saved processor writes


def loads_as_vision_language(name_or_path: str, kwargs: dict[str, Any]) -> bool:
    """Whether the checkpoint is of a vision-language type (transformers' image-text-to-text models), or a local
    folder a processor was saved in (a vision-language run's adapter)."""
    import os

    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if any(os.path.isfile(os.path.join(name_or_path, name)) for name in PROCESSOR_FILES):
        return True
    return _model_type(name_or_path, kwargs) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def auto_model_class(name_or_path: str, kwargs: dict[str, Any]) -> Any:
    """``AutoModelForCausalLM``, or ``AutoModelForImageTextToText`` for a vision-language type the causal-LM auto
    class does not know (Gemma 3 is in both: the causal-LM class loads its vision-language model)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = _model_type(name_or_path, kwargs)
    if (
        model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    ):
        return AutoModelForImageTextToText
    return AutoModelForCausalLM


def vision_modules(model: torch.nn.Module) -> list[str]:
    """The names of the modules that encode images (the vision tower and the projector), outermost first."""
    found = []
    for name, _ in base_model(model).named_modules():
        if name.split(".")[-1] in VISION_MODULE_NAMES and not any(name.startswith(f"{outer}.") for outer in found):
            found.append(name)
    return found


def vision_tower(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module that encodes images (``visual``, ``vision_tower`` or ``vision_model``), or ``None``."""
    base = base_model(model)
    for name in vision_modules(model):
        if name.split(".")[-1] in VISION_MODULE_NAMES[:3]:
            return base.get_submodule(name)
    return None


def language_model_lora(peft_config: Any, model: torch.nn.Module) -> Any:
    """``peft_config`` as it applies to ``model``: the vision tower's exclusion (``hf-dpo``'s default, see
    ``lora_vision_tower``) is dropped for a text model, where it excludes nothing and peft would warn so."""
    if getattr(peft_config, "exclude_modules", None) != VISION_MODULES_PATTERN or is_vision_language(model):
        return peft_config
    import copy

    peft_config = copy.copy(peft_config)
    peft_config.exclude_modules = None
    return peft_config
