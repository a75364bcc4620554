"""Models by name and what a run does to them: loading (Hub ids, folders, GGUF, packaged ``hf_dpo:`` copies, 4/8-bit),
the policy and its tokenizer, PEFT adapters, modes, bitsandbytes only where a run quantizes, small facts.

- :mod:`~hf_dpo.models.loading`, :mod:`~hf_dpo.models.policy`: by name, one set of kwargs for policy and reference;
- :mod:`~hf_dpo.models.adapters`: the policy wrapped as it trains, and the trained adapter saved alone;
- :mod:`~hf_dpo.models.modes`: eval mode for a while, frozen for good, dropout off, activations offloaded;
- :mod:`~hf_dpo.models.quantization`: bitsandbytes held back until needed; 4-bit layers trainable on a CPU;
- :mod:`~hf_dpo.models.facts`, :mod:`~hf_dpo.models.wrappers`: PEFT or not, quantized or not, the router's weight,
  the model inside DDP/PEFT wrappers;
- :mod:`~hf_dpo.models.vision`: vision-language models, their auto class and processor by name, their vision tower;
- :mod:`~hf_dpo.models.upstream_noise`: upstream warnings nobody can act on, silenced where they arise.
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "PACKAGED_PREFIX": "hf_dpo.models.packaged",
        "base_model": "hf_dpo.models.wrappers",
        "bitsandbytes_held_back": "hf_dpo.models.held_back",
        "disable_dropout": "hf_dpo.models.modes",
        "eval_mode": "hf_dpo.models.modes",
        "freeze": "hf_dpo.models.modes",
        "init_kwargs": "hf_dpo.models.loading",
        "is_peft_model": "hf_dpo.models.facts",
        "is_quantized": "hf_dpo.models.facts",
        "is_vision_language": "hf_dpo.models.vision",
        "keep_4bit_layers_trainable": "hf_dpo.models.quantization",
        "load_causal_lm": "hf_dpo.models.loading",
        "load_tokenizer": "hf_dpo.models.loading",
        "model_and_tokenizer": "hf_dpo.models.policy",
        "model_id": "hf_dpo.models.policy",
        "offloading_activations": "hf_dpo.models.modes",
        "packaged_file": "hf_dpo.models.packaged",
        "release_bitsandbytes": "hf_dpo.models.held_back",
        "reload_name": "hf_dpo.models.loading",
        "remote_code": "hf_dpo.models.loading",
        "router_aux_loss_coef": "hf_dpo.models.facts",
        "saving_only_adapter": "hf_dpo.models.adapters",
        "silenced": "hf_dpo.models.upstream_noise",
        "unwrapped": "hf_dpo.models.wrappers",
        "wrap_peft": "hf_dpo.models.adapters",
    },
)
