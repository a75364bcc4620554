"""Test helpers: a byte-level BPE tokenizer with a ChatML template and tiny Llama models, all built in code."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# Tiny models run faster on one thread than with two threads handing work back and forth.
torch.set_num_threads(1)

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog. What is the capital of France? Paris is the answer.",
    "Question: how many legs does a spider have? Answer: eight. Yes, no, maybe, good, bad, red, blue.",
    "user assistant system helpful harmless honest 0 1 2 3 4 5 6 7 8 9 + - = ?",
]


def build_tokenizer(bos: bool = True, pad: bool = True, chat_template: bool = True) -> PreTrainedTokenizerFast:
    specials = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, special_tokens=specials, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend._tokenizer,
        bos_token="<s>" if bos else None,
        eos_token="</s>",
        pad_token="<pad>" if pad else None,
    )
    if chat_template:
        tokenizer.chat_template = CHATML
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    values = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = LlamaConfig(**{**values, **overrides})
    return LlamaForCausalLM(config)


def preference_rows(count: int = 32) -> list[dict[str, str]]:
    """A preference a tiny model learns in a few dozen steps: answers 'yes' are chosen over 'no'."""
    subjects = ["fox", "dog", "spider", "Paris", "France", "capital", "answer", "question"]
    return [
        {
            "prompt": f"Question: is the {subjects[i % len(subjects)]} good {i}?",
            "chosen": " Answer: yes good",
            "rejected": " Answer: no bad",
        }
        for i in range(count)
    ]


def free_port() -> int:
    """A loopback port nobody listens on now: parallel test runs (several checkouts on one machine) must not share
    a fixed rendezvous port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
