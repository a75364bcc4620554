"""Tiny causal LMs of many families, built in code from their configs: the zoo the shared-prompt layout is checked
on (tests/batch/test_attention_function.py). Windows are short so they bite on the test rows."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

COMMON = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
# model_type -> config overrides (on top of COMMON, renamed where a family names a size differently)
FAMILIES = {
    "llama": {},
    "qwen2": {},
    "qwen3": {"head_dim": 8},
    "mistral": {"sliding_window": 5},  # shorter than the rows: the window bites
    "gemma": {"head_dim": 8},
    "gemma2": {"head_dim": 8, "sliding_window": 5, "attn_implementation": "eager"},  # soft-capped, hybrid layers
    "gemma3_text": {"head_dim": 8, "sliding_window": 5, "layer_types": ["sliding_attention", "full_attention"]},
    "phi3": {"sliding_window": 6, "pad_token_id": 0},
    "gpt2": {
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 4,
        "n_positions": 256,
        "resid_pdrop": 0,
        "embd_pdrop": 0,
        "attn_pdrop": 0,
    },
    "gpt_neox": {"rotary_pct": 0.5},
    "olmo2": {},
    "granite": {},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": None},
    "qwen3_moe": {"head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
}
MOE = ("mixtral", "qwen3_moe")


def build(family: str, vocab_size: int, attention: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    """A tiny fp32 model of ``family`` with ``attention`` (a family's own default where it needs one)."""
    torch.manual_seed(seed)
    special = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    values = {**COMMON, **special, **FAMILIES[family], "vocab_size": vocab_size}
    implementation = values.pop("attn_implementation", attention)
    config = AutoConfig.for_model(family, **values)
    return AutoModelForCausalLM.from_config(config, attn_implementation=implementation).float()
