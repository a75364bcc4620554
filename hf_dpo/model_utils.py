"""Small facts about and operations on a model that several modules need: PEFT or not, quantized or not, modes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def is_quantized(model: Any) -> bool:
    """Loaded in 4 or 8 bits by bitsandbytes (such a model is placed when loaded and refuses ``.to()``)."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the block with ``model.eval()`` and restore the previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients, for good."""
    model.eval()
    model.requires_grad_(False)
    return model


def disable_dropout(model: torch.nn.Module) -> None:
    """Zero dropout modules and the attention-dropout probabilities that attention layers read at run time."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
