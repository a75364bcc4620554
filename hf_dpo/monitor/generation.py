"""Answers generated from tokenized prompts, with their lengths: what ``hf-dpo eval --generate`` and the samples
callback show side by side.

Prompts are token ids exactly as training tokenized them (``prompt_input_ids`` from
:func:`hf_dpo.data.tokenization.tokenize_row`), so the model continues the very prefix it was trained on. Generation
stops at the tokenizer's EOS (which ends every trained completion) or at any end token of the model's
generation config; an answer that reaches ``max_new_tokens`` first "hit the limit", the sign of an answer that
does not know how to end (length exploitation is the classic DPO failure)::

    python -m pytest tests/test_tools_eval.py -k generate
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig

from hf_dpo.models.modes import eval_mode


@dataclass(frozen=True)
class Generation:
    """One answer: its text (special tokens dropped, stripped), token ids before the end token, whether it ran out
    of ``max_new_tokens`` before ending."""

    text: str
    token_ids: list[int]
    hit_limit: bool

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class SamplingSettings:
    """Greedy by default; ``do_sample`` draws with ``temperature``/``top_p`` from ``seed`` (the same seed for every
    model, so policy and reference draw alike)."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def describe(self) -> str:
        how = f"sampled (T={self.temperature}, top_p={self.top_p}, seed {self.seed})" if self.do_sample else "greedy"
        return f"{how}, at most {self.max_new_tokens} new tokens"


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's EOS and every end token of the model's generation config (an end-of-turn token, say)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return list(dict.fromkeys(token for token in (tokenizer.eos_token_id, *configured) if token is not None))


def split_at_stop(new_tokens: Sequence[int], stops: Sequence[int]) -> tuple[list[int], bool]:
    """The answer's ids before the first stop token, and whether no stop token came (it hit the limit).

    >>> split_at_stop([5, 6, 2, 0, 0], stops=[2])
    ([5, 6], False)
    >>> split_at_stop([5, 6, 7], stops=[2])
    ([5, 6, 7], True)
    """
    for position, token in enumerate(new_tokens):
        if token in stops:
            return list(new_tokens[:position]), False
    return list(new_tokens), True


def _left_padded(prompts: Sequence[Sequence[int]], pad_token_id: int, device: Any) -> dict[str, torch.Tensor]:
    """Generation continues from the right: prompts are padded on the left."""
    length = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, length - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        attention_mask[row, length - len(prompt) :] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def _autocast(model: Any, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(next(model.parameters()).device.type, dtype=dtype)


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    settings: SamplingSettings = SamplingSettings(),
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
) -> list[Generation]:
    """One answer per tokenized prompt, in eval mode (``autocast_dtype``: generate under the precision training
    used). The sampling seed is set once before the first batch."""
    stops = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        **({"temperature": settings.temperature, "top_p": settings.top_p} if settings.do_sample else {}),
        eos_token_id=stops,
        pad_token_id=pad,
    )
    device = next(model.parameters()).device
    if settings.do_sample:
        torch.manual_seed(settings.seed)
    answers = []
    with eval_mode(model), _autocast(model, autocast_dtype):
        for start in range(0, len(prompts), batch_size):
            batch = _left_padded(prompts[start : start + batch_size], pad, device)
            output = model.generate(**batch, generation_config=config)
            for new_tokens in output[:, batch["input_ids"].shape[1] :].tolist():
                ids, hit_limit = split_at_stop(new_tokens, stops)
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                answers.append(Generation(text=text, token_ids=ids, hit_limit=hit_limit))
    return answers
