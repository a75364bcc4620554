"""Scores of generated answers: a Python callable (``--scorer module:function``) or a sequence-classification
reward model (``--reward_model PATH``). ``hf-dpo eval --generate N`` scores the policy's and the reference's
answers with the same one, the "true reward before and after" of a DPO run::

    hf-dpo eval outputs/demo --dataset hf_dpo:concise_qa --generate 20 --scorer hf_dpo.tools.scoring:concise_qa

A scorer is ``function(completion: str, row: dict) -> float | bool``: the answer's text and the dataset row it
answers (``prompt``, ``chosen``, ``rejected`` and any other column, such as the demo's ``answers``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from hf_dpo.config.recipe import UserError
from hf_dpo.data.formats import is_conversation

Scorer = Callable[[str, dict[str, Any]], float]


def load_scorer(spec: str) -> Scorer:
    """``"package.module:function"`` -> the function; the error says which part is missing."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise UserError(f"--scorer takes module:function (e.g. hf_dpo.tools.scoring:concise_qa), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise UserError(f"--scorer {spec}: {error}") from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"--scorer {spec}: module {module_name} has no function {function_name!r}")
    return function


def concise_qa(completion: str, row: dict[str, Any]) -> float:
    """The demo's exact-match checker as a scorer: 1.0 when the answer is one of the row's ``answers``."""
    from hf_dpo.demo.make_data import is_correct  # the demo's checker; only this scorer needs it

    return float(is_correct(completion, row["answers"]))


def score_with(scorer: Scorer, completions: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[float]:
    return [float(scorer(completion, row)) for completion, row in zip(completions, rows)]


def prompt_text(prompt: Any, tokenizer: Any) -> str:
    """A row's prompt as text: chat messages through ``tokenizer``'s chat template (with the generation prompt),
    plain text as it is."""
    if is_conversation(prompt):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return prompt


def reward_model_texts(rows: Sequence[dict[str, Any]], completions: Sequence[str], tokenizer: Any) -> list[str]:
    """What the reward model reads: the conversation with the answer as the assistant's turn (with its chat
    template), else the prompt text followed by the answer."""
    texts = []
    for row, completion in zip(rows, completions):
        prompt = row["prompt"]
        if is_conversation(prompt) and getattr(tokenizer, "chat_template", None):
            messages = [*prompt, {"role": "assistant", "content": completion}]
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
        else:
            plain = prompt if isinstance(prompt, str) else "\n".join(message["content"] for message in prompt)
            texts.append(plain + completion if completion[:1].isspace() else f"{plain} {completion}")
    return texts


class RewardModelScorer:
    """A sequence-classification model with one output (TRL's reward models): the score is that logit."""

    def __init__(self, path: str, device: Any = None, batch_size: int = 8):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        if self.model.config.num_labels != 1:
            raise UserError(
                f"--reward_model {path} has {self.model.config.num_labels} outputs; a reward model has one (num_labels=1)"
            )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # the model finds each row's last token through the pad id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(device or "cpu")
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, completions: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[float]:
        texts = reward_model_texts(rows, completions, self.tokenizer)
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], return_tensors="pt", padding=True)
            logits = self.model(**batch.to(self.model.device)).logits
            scores += logits[:, 0].float().tolist()
        return scores
