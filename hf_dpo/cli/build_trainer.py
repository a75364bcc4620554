"""The `DPOTrainer` ``hf-dpo train`` runs, built from its argument classes: the policy, its tokenizer and a reference
named in the recipe all load through one set of kwargs, and bitsandbytes is imported only when the run uses it.

    trainer = build_trainer(model_args, args, train_split, eval_split)   # model_args, args: from parse_train_args
"""

from __future__ import annotations

from typing import Any

from hf_dpo.config.run_arguments import ModelArguments
from hf_dpo.models.held_back import bitsandbytes_is_held_back, release_bitsandbytes
from hf_dpo.models.upstream_noise import PEFT_READS_DEPRECATED_CHECKPOINTING, silenced

# Optimizers that never use bitsandbytes; any other name (8-bit, paged, lion, ademamix, ...) may.
PLAIN_OPTIMIZER_PREFIXES = ("adamw_torch", "adafactor", "sgd", "adagrad")


def fold_model_init_kwargs(model_args: ModelArguments, args: Any) -> dict[str, Any]:
    """Put ``model_args``' loading switches (dtype, attention, remote code, 4/8-bit) into ``args.model_init_kwargs``,
    where the user's own ``model_init_kwargs`` win on conflicts, and return them.

    The policy is loaded here and a reference given by name is loaded by the trainer from
    ``args.model_init_kwargs``: with one set of kwargs both go through the same ``load_causal_lm`` call, so a QLoRA
    recipe's named reference is 4-bit too.
    """
    from hf_dpo.models.loading import remote_code  # torch and transformers load with the run, not the command

    args.model_init_kwargs = {**remote_code(args), **model_args.init_kwargs(), **(args.model_init_kwargs or {})}
    return args.model_init_kwargs


def needs_bitsandbytes(model_args: ModelArguments, args: Any) -> bool:
    """Whether the run uses bitsandbytes: 4/8-bit loading, a quantization_config, a bitsandbytes optimizer, or a
    model saved quantized by bitsandbytes (its config.json says so)."""
    kwargs = {**model_args.init_kwargs(), **(args.model_init_kwargs or {})}
    if kwargs.get("load_in_4bit") or kwargs.get("load_in_8bit") or "quantization_config" in kwargs:
        return True
    optim = str(getattr(args.optim, "value", args.optim))
    if not (optim == "rmsprop" or optim.startswith(PLAIN_OPTIMIZER_PREFIXES)):
        return True
    names = (model_args.model_name_or_path, model_args.ref_model_name_or_path)
    return any(_saved_with_bitsandbytes(name, kwargs) for name in names if name)


def _saved_with_bitsandbytes(name: str, init_kwargs: dict[str, Any]) -> bool:
    from transformers import PretrainedConfig

    from hf_dpo.models.packaged import PACKAGED_PREFIX

    if name.startswith(PACKAGED_PREFIX) or "gguf_file" in init_kwargs:
        return False  # GGUF files are never bitsandbytes checkpoints

    hub_kwargs = {
        key: init_kwargs[key] for key in ("revision", "subfolder", "cache_dir", "token") if key in init_kwargs
    }
    try:
        config, _ = PretrainedConfig.get_config_dict(name, **hub_kwargs)
    except OSError:  # not found, no config.json: loading the model reports it
        return False
    return (config.get("quantization_config") or {}).get("quant_method") == "bitsandbytes"


def load_run_tokenizer(model_args: ModelArguments, args: Any) -> Any:
    """The policy's tokenizer, loaded before the model (the data checks need it, the model can wait)."""
    from hf_dpo.models.loading import load_tokenizer

    return load_tokenizer(model_args.model_name_or_path, trust_remote_code=args.trust_remote_code)


def build_trainer(
    model_args: ModelArguments, args: Any, train_split: Any, eval_split: Any, tokenizer: Any = None
) -> Any:
    """A `DPOTrainer` (not yet trained) on the policy, tokenizer and reference that ``model_args`` name."""
    if bitsandbytes_is_held_back() and needs_bitsandbytes(model_args, args):
        release_bitsandbytes()
    from hf_dpo.models.loading import load_causal_lm
    from hf_dpo.trainer.trainer import DPOTrainer

    init_kwargs = fold_model_init_kwargs(model_args, args)
    name = model_args.model_name_or_path
    tokenizer = tokenizer if tokenizer is not None else load_run_tokenizer(model_args, args)
    with silenced(PEFT_READS_DEPRECATED_CHECKPOINTING):  # peft's PeftModel.__init__, via get_peft_model (see quiet)
        return DPOTrainer(
            model=load_causal_lm(name, role="policy", **init_kwargs),
            ref_model=model_args.ref_model_name_or_path,  # a name: loaded by the trainer with the same init_kwargs
            args=args,
            train_dataset=train_split,
            eval_dataset=eval_split,
            processing_class=tokenizer,
            peft_config=model_args.peft_config(),
        )
