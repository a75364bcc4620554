"""Tasks whose answers a checker in code can verify, to score greedy generations before and after DPO.

A task is a function ``is_correct(response, answers) -> bool``; the evaluation rows carry ``prompt`` (chat messages
or text) and ``answers`` (accepted answers). ``hf-dpo train`` scores the one its recipe names (``task: concise_qa``
in recipes/demo.yaml)::

    hf-dpo train recipes/demo.yaml
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from hf_dpo.data.formats import is_conversation
from hf_dpo.demo.make_data import is_correct
from hf_dpo.models.modes import eval_mode

Checker = Callable[[str, list[str]], bool]

TASKS: dict[str, Checker] = {"concise_qa": is_correct}


def get_checker(name: str) -> Checker:
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not one of {', '.join(TASKS)}")
    return TASKS[name]


@torch.no_grad()
def greedy_answers(
    model: Any, tokenizer: Any, prompts: list[Any], max_new_tokens: int, batch_size: int = 16, bf16: bool = False
) -> list[str]:
    """Greedy completions of ``prompts`` (chat messages or strings), decoded without special tokens; ``bf16``
    generates under bfloat16 autocast, as training does with ``--bf16``."""
    texts = [
        tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if is_conversation(prompt)
        else prompt
        for prompt in prompts
    ]
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues from the right
    answers = []
    try:
        with eval_mode(model):
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(
                    texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(model.device)
                with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
                    output = model.generate(
                        **batch,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                    )
                new_tokens = output[:, batch["input_ids"].shape[1] :]
                answers += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = padding_side
    return [answer.strip() for answer in answers]


def score_greedy_answers(
    model: Any,
    tokenizer: Any,
    rows: Any,
    checker: Checker,
    max_new_tokens: int = 32,
    bf16: bool = False,
) -> tuple[float, list[dict[str, Any]]]:
    """Fraction of rows whose greedy answer passes ``checker``, and each row's question, answer and verdict."""
    prompts = list(rows["prompt"])
    answers = greedy_answers(model, tokenizer, prompts, max_new_tokens, bf16=bf16)
    results = []
    for prompt, answer, accepted in zip(prompts, answers, rows["answers"]):
        question = prompt[-1]["content"] if is_conversation(prompt) else prompt
        results.append({"question": question, "answer": answer, "correct": bool(checker(answer, accepted))})
    return sum(result["correct"] for result in results) / max(len(results), 1), results
