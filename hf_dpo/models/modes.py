"""A model's modes for a while or for good: eval mode around a reference pass, frozen, dropout off, activations
offloaded to CPU memory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


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


@contextlib.contextmanager
def offloading_activations(context: Any) -> Iterator[None]:
    """``context``, with the tensors autograd saves for backward kept in (pinned) CPU memory: less device memory,
    for a copy back per use (TRL's ``activation_offloading``)."""
    with context, torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
        yield
