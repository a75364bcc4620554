"""Small facts about and operations on a model that several modules need: PEFT or not, quantized or not, modes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import torch

from hf_dpo.models.upstream_noise import PEFT_READS_DEPRECATED_CHECKPOINTING, silenced


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


def wrap_peft(model: torch.nn.Module, peft_config: Any, activation_checkpointing: bool) -> torch.nn.Module:
    """The policy as it trains: ``model`` wrapped with ``get_peft_model`` when a ``peft_config`` is given (after
    k-bit preparation for a quantized model); a quantized model without adapters is refused."""
    quantized = is_quantized(model)
    if peft_config is None:
        if quantized and not is_peft_model(model):
            raise ValueError("a 4-bit or 8-bit model cannot be trained itself; pass a peft_config (QLoRA)")
    elif is_peft_model(model):
        raise ValueError(
            "model is already a PeftModel and a peft_config was also given; pass one or the other "
            "(to add an adapter to a PeftModel, merge it first with model.merge_and_unload())"
        )
    else:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if quantized:
            # fp32 norms and an input that requires grad; checkpointing is left to the Trainer's own argument
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        with silenced(PEFT_READS_DEPRECATED_CHECKPOINTING):  # peft 0.21 reads a property transformers deprecated
            model = get_peft_model(model, peft_config)
    if activation_checkpointing and is_peft_model(model):
        # LoRA leaves the embeddings frozen; checkpointed blocks still need an input that requires grad.
        model.enable_input_require_grads()
    return model


@contextlib.contextmanager
def saving_only_adapter(peft_model: Any, adapter: str) -> Iterator[None]:
    """While active, ``peft_model.save_pretrained(folder)`` writes ``adapter`` alone, at the root of ``folder``.

    peft writes every loaded adapter, each but ``default`` in a sub-folder named after it: a run whose reference is
    a frozen copy of its SFT adapter would save that copy too, and a trained adapter with another name would not
    sit where ``AutoPeftModelForCausalLM.from_pretrained(folder)`` looks.
    """
    original = peft_model.save_pretrained

    def save_pretrained(save_directory: str, **kwargs: Any) -> None:
        if not kwargs.get("is_main_process", True):
            return original(save_directory, **kwargs)
        with tempfile.TemporaryDirectory(dir=save_directory, prefix=".staging-") as staging:
            original(staging, **{**kwargs, "selected_adapters": [adapter]})
            written = staging if adapter == "default" else os.path.join(staging, adapter)
            for name in os.listdir(written):
                os.replace(os.path.join(written, name), os.path.join(save_directory, name))
        return None

    peft_model.save_pretrained = save_pretrained  # an instance attribute shadows the method
    try:
        yield
    finally:
        del peft_model.save_pretrained


@contextlib.contextmanager
def offloading_activations(context: Any) -> Iterator[None]:
    """``context``, with the tensors autograd saves for backward kept in (pinned) CPU memory: less device memory,
    for a copy back per use (TRL's ``activation_offloading``)."""
    with context, torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
        yield
