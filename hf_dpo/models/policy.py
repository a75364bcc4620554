"""The policy a trainer is handed, as it trains: loaded when given by name (with TRL's ``model_init_kwargs``
semantics), with its tokenizer and a pad token, and tagged for the Hub."""

from __future__ import annotations

import logging
from typing import Any

import torch

from hf_dpo.models.loading import init_kwargs, load_causal_lm, load_tokenizer, reload_name, remote_code
from hf_dpo.models.wrappers import base_model

logger = logging.getLogger(__name__)


MODEL_TAGS = ["dpo", "hf_dpo"]  # tags the Hub repo of a pushed model, as TRL's trainers do
DTYPE_NAMES = ("bfloat16", "float16", "float32")  # the dtype strings TRL's model_init_kwargs accept, with "auto"
QUANTIZING_KWARGS = ("load_in_4bit", "load_in_8bit", "quantization_config")


def model_id(model: Any) -> str:
    """The name a model was loaded by (a packaged copy keeps its ``hf_dpo:`` name), or ``""``."""
    return model if isinstance(model, str) else reload_name(model) or ""


def named_model_kwargs(args: Any, like: Any = None) -> dict[str, Any]:
    """The ``from_pretrained`` keyword arguments of a model given by name, with TRL 1.16's ``model_init_kwargs``
    semantics (``trl.trainer.utils.create_model_from_path``):

    - ``dtype``: float32 unless set (not the checkpoint's own dtype, transformers' ``"auto"``); a torch dtype,
      ``"auto"``, None, or one of ``"bfloat16"``, ``"float16"``, ``"float32"``;
    - ``device_map``: None on a CPU (or Apple's MPS) and in a distributed run, else ``"auto"``, unless set; a
      quantized load keeps its own placement (each process's device, see ``hf_dpo.models.loading``);
    - ``trust_remote_code``: from ``args.trust_remote_code`` unless set.

    ``like``: for a reference given by name, the policy: its dtype and attention implementation are the defaults, as
    TRL builds its own reference ("like the policy").
    """
    kwargs = init_kwargs(args)
    if "torch_dtype" in kwargs:  # transformers' older name
        kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
    if like is not None:
        policy = base_model(like)
        kwargs.setdefault("dtype", policy.dtype)
        kwargs.setdefault("attn_implementation", getattr(policy.config, "_attn_implementation", None))
    dtype = kwargs.get("dtype", "float32")
    if isinstance(dtype, str) and dtype in DTYPE_NAMES:
        dtype = getattr(torch, dtype)
    elif not (dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype)):
        raise ValueError(
            f"model_init_kwargs: dtype={dtype!r} must be 'auto', None, a torch.dtype or one of {', '.join(DTYPE_NAMES)}"
        )
    kwargs["dtype"] = dtype
    if not any(kwargs.get(name) for name in QUANTIZING_KWARGS):
        state = args.distributed_state
        if state.num_processes > 1 or state.distributed_type == "DEEPSPEED":
            kwargs["device_map"] = None  # each process holds its own copy; "auto" would spread it over every GPU
        else:
            kwargs.setdefault("device_map", None if args.device.type in ("cpu", "mps") else "auto")
    return kwargs


def model_and_tokenizer(model: Any, tokenizer: Any, args: Any) -> tuple[Any, Any]:
    """The policy (loaded when given by name, see :func:`named_model_kwargs`) and its tokenizer (loaded by the
    model's name when not given; a vision-language model's processor), with a pad token: ``args.pad_token``, else
    the tokenizer's, else its EOS token (on the tokenizer inside a processor)."""
    name = model_id(model)
    if isinstance(model, str):
        model = load_causal_lm(model, role="policy", **named_model_kwargs(args))
    if tokenizer is None:
        if not name:
            raise ValueError("pass processing_class (the tokenizer): the model has no name or path to load one from")
        tokenizer = load_tokenizer(name, **remote_code(args))
    set_pad_token(getattr(tokenizer, "tokenizer", tokenizer), args.pad_token)  # a processor's tokenizer
    if hasattr(model, "add_model_tags"):
        model.add_model_tags(MODEL_TAGS)
    return model, tokenizer


def set_pad_token(tokenizer: Any, pad_token: str | None) -> None:
    """``pad_token`` (a run's ``args.pad_token``), else the tokenizer's own, else its EOS token."""
    if pad_token is not None:
        if pad_token not in tokenizer.get_vocab():
            raise ValueError(f"pad_token={pad_token!r} is not in the tokenizer's vocabulary")
        tokenizer.pad_token = pad_token
    if getattr(tokenizer, "pad_token", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.warning("the tokenizer has no pad token; using its EOS token %r", tokenizer.eos_token)
