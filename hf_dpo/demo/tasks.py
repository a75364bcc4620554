"""Tasks whose answers checks in code can verify, to score greedy generations before and after DPO.

A task names its checks, each ``check(response, answers) -> bool``; the evaluation rows carry ``prompt`` (chat
messages or text) and ``answers`` (accepted answers). ``hf-dpo train`` scores the task its recipe names (``task:
concise_qa`` in recipes/demo.yaml) with every check of it, so a run that wins on one and loses on another shows
both::

    hf-dpo train recipes/demo.yaml
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.data.formats import is_conversation
from hf_dpo.demo.checks import MAX_WORDS, bare_answer, one_sentence, states_answer
from hf_dpo.models.modes import eval_mode

Check = Callable[[str, Sequence[str]], bool]


@dataclass(frozen=True)
class Task:
    """Named checks of an answer (``{"format": ..., "fact": ...}``) and what each verifies, in words."""

    checks: dict[str, Check]
    meaning: dict[str, str]


FACT_WORDS = "an accepted answer appears in the reply"
TASKS: dict[str, Task] = {
    "concise_qa": Task(
        {"format": one_sentence, "fact": states_answer},
        {"format": f"one sentence of at most {MAX_WORDS} words, nothing around it", "fact": FACT_WORDS},
    ),
    "bare_qa": Task(
        {"format": bare_answer, "fact": states_answer},
        {"format": "the bare answer alone", "fact": FACT_WORDS},
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not one of {', '.join(TASKS)}")
    return TASKS[name]


@torch.no_grad()
def greedy_answers(
    model: Any,
    tokenizer: Any,
    prompts: list[Any],
    max_new_tokens: int,
    batch_size: int = 16,
    bf16: bool = False,
    progress: str | None = None,
) -> list[str]:
    """Greedy completions of ``prompts`` (chat messages or strings), decoded without special tokens; ``bf16``
    generates under bfloat16 autocast, as training does with ``--bf16``; ``progress`` is the label of a progress
    bar (none without it)."""
    from tqdm.auto import tqdm

    texts = [
        tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if is_conversation(prompt)
        else prompt
        for prompt in prompts
    ]
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues from the right
    answers: list[str] = []
    bar = tqdm(total=len(texts), desc=progress, unit="answer", disable=progress is None)
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
                bar.update(len(new_tokens))
    finally:
        tokenizer.padding_side = padding_side
        bar.close()
    return [answer.strip() for answer in answers]


def score_greedy_answers(
    model: Any,
    tokenizer: Any,
    rows: Any,
    task: Task,
    max_new_tokens: int = 32,
    bf16: bool = False,
    progress: str | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The share of rows whose greedy answer passes each of ``task``'s checks, and each row's question, accepted
    answers, answer and verdicts (one key per check)."""
    prompts = list(rows["prompt"])
    answers = greedy_answers(model, tokenizer, prompts, max_new_tokens, bf16=bf16, progress=progress)
    results = []
    for prompt, answer, accepted in zip(prompts, answers, rows["answers"]):
        question = prompt[-1]["content"] if is_conversation(prompt) else prompt
        verdicts = {name: bool(check(answer, accepted)) for name, check in task.checks.items()}
        results.append({"question": question, "answers": list(accepted), "answer": answer, **verdicts})
    shares = {name: sum(result[name] for result in results) / max(len(results), 1) for name in task.checks}
    return shares, results
