"""A LoRA run pushed as a plain model: the trained adapter merged into its base weights.

``trainer.push_to_hub()`` pushes what the run saved (the adapter, its card, the tokenizer: Trainer's own push);
``trainer.push_to_hub(merge_adapter=True)`` pushes instead a model that loads with plain
``AutoModelForCausalLM.from_pretrained``: the adapter folded into a copy of the base weights on the CPU, in the
base model's dtype, saved as safetensors in ``OUTPUT_DIR/merged`` with the tokenizer and a card. The training model
is left untouched.
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from hf_dpo.models.facts import is_peft_model, is_quantized
from hf_dpo.models.loading import load_causal_lm, reload_name
from hf_dpo.publish.model_card import write_model_card

logger = logging.getLogger(__name__)

MERGED_FOLDER = "merged"


def merged_model(peft_model: Any) -> torch.nn.Module:
    """The active adapter of ``peft_model`` merged into a copy of its base model, on the CPU, in the base dtype.

    A 4-bit or 8-bit base has no weights to merge into: the base is loaded again by name in its compute dtype
    and the adapter's weights are set on it first.
    """
    if not is_peft_model(peft_model):
        raise ValueError("merge_adapter=True needs a PEFT model: a full fine-tune is pushed as it is")
    adapter = peft_model.active_adapter
    if is_quantized(peft_model):
        source = _unquantized_twin(peft_model, adapter)
    else:
        source = copy.deepcopy(peft_model).to("cpu")
    return source.merge_and_unload(adapter_names=[adapter])


def _unquantized_twin(peft_model: Any, adapter: str) -> Any:
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    base = peft_model.get_base_model()
    name = reload_name(peft_model)
    if not name:
        raise ValueError("a quantized base built in code has no name to load it again unquantized for merging")
    dtype = getattr(getattr(base.config, "quantization_config", None), "bnb_4bit_compute_dtype", None)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype or torch.bfloat16
    logger.info("merging the adapter into %s loaded again in %s (the 4-bit weights cannot take it)", name, dtype)
    twin = get_peft_model(load_causal_lm(name, dtype=dtype), copy.deepcopy(peft_model.peft_config[adapter]))
    set_peft_model_state_dict(twin, get_peft_model_state_dict(peft_model, adapter_name=adapter))
    return twin


def push_merged(
    trainer: Any,
    commit_message: str | None = "End of training (merged model)",
    token: str | None = None,
    revision: str | None = None,
    private: bool | None = None,
    **card_kwargs: Any,
) -> Any:
    """Save the merged model, its tokenizer and card to ``OUTPUT_DIR/merged`` and upload that folder to the run's
    Hub repository (created as Trainer creates it)."""
    token = token if token is not None else trainer.args.hub_token
    if trainer.hub_model_id is None:
        trainer.init_hf_repo(token=token, private=private)
    if not trainer.is_world_process_zero():
        return None
    folder = Path(trainer.args.output_dir) / MERGED_FOLDER
    merged = merged_model(trainer.accelerator.unwrap_model(trainer.model))
    merged.save_pretrained(folder)  # safetensors
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(folder)
    plot = Path(trainer.args.output_dir) / "training.png"
    if plot.is_file():
        shutil.copy(plot, folder / plot.name)
    model_name = card_kwargs.pop("model_name", None) or trainer.hub_model_id.split("/")[-1]
    write_model_card(str(folder / "README.md"), trainer=trainer, model_name=model_name, merged=True, **card_kwargs)
    from huggingface_hub import HfApi

    return HfApi().upload_folder(
        repo_id=trainer.hub_model_id,
        folder_path=str(folder),
        commit_message=commit_message,
        token=token,
        revision=revision or trainer.args.hub_revision,
    )
