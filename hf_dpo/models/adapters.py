"""PEFT adapters on the policy: wrapping it as it trains (QLoRA's k-bit preparation included) and saving the
trained adapter alone."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import torch

from hf_dpo.models.facts import is_peft_model, is_quantized
from hf_dpo.models.upstream_noise import PEFT_READS_DEPRECATED_CHECKPOINTING, silenced
from hf_dpo.models.vision import language_model_lora


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
            model = get_peft_model(model, language_model_lora(peft_config, model))
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
