"""The policy a trainer is handed, as it trains: loaded when given by name, with its tokenizer and a pad token, and
tagged for the Hub."""

from __future__ import annotations

import logging
from typing import Any

from hf_dpo.models.loading import init_kwargs, load_causal_lm, load_tokenizer, reload_name, remote_code

logger = logging.getLogger(__name__)


MODEL_TAGS = ["dpo", "hf_dpo"]  # tags the Hub repo of a pushed model, as TRL's trainers do


def model_id(model: Any) -> str:
    """The name a model was loaded by (a packaged copy keeps its ``hf_dpo:`` name), or ``""``."""
    return model if isinstance(model, str) else reload_name(model) or ""


def model_and_tokenizer(model: Any, tokenizer: Any, args: Any) -> tuple[Any, Any]:
    """The policy (loaded when given by name) and its tokenizer (loaded by the model's name when not given), with
    a pad token: ``args.pad_token``, else the tokenizer's, else its EOS token."""
    name = model_id(model)
    if isinstance(model, str):
        model = load_causal_lm(model, role="policy", **init_kwargs(args))
    if tokenizer is None:
        if not name:
            raise ValueError("pass processing_class (the tokenizer): the model has no name or path to load one from")
        tokenizer = load_tokenizer(name, **remote_code(args))
    if args.pad_token is not None:
        if args.pad_token not in tokenizer.get_vocab():
            raise ValueError(f"pad_token={args.pad_token!r} is not in the tokenizer's vocabulary")
        tokenizer.pad_token = args.pad_token
    if getattr(tokenizer, "pad_token", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.warning("the tokenizer has no pad token; using its EOS token %r", tokenizer.eos_token)
    if hasattr(model, "add_model_tags"):
        model.add_model_tags(MODEL_TAGS)
    return model, tokenizer
