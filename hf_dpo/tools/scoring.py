"""Scores of generated answers: Python callables (``--scorer module:function``, several at once) and a
sequence-classification reward model (``--reward_model PATH``). ``hf-dpo eval --generate N`` scores the policy's and
the reference's answers with each, the "true reward before and after" of a DPO run; several scorers show a trade-off
one alone hides (the demo's: the form it teaches, and the facts)::

    hf-dpo eval outputs/demo --dataset hf_dpo:concise_qa --generate 80 \\
        --scorer hf_dpo.tools.scoring:one_sentence hf_dpo.tools.scoring:states_answer

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
from hf_dpo.monitor import pair_metrics

Scorer = Callable[[str, dict[str, Any]], float]
# Scores a list of answers to a list of rows at once (a reward model batches them); a Scorer wrapped by score_with
BatchScorer = Callable[[Sequence[str], Sequence[dict[str, Any]]], list[float]]


def load_scorer(spec: str) -> Scorer:
    """``"package.module:function"`` -> the function; the error says which part is missing."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise UserError(f"--scorer takes module:function (e.g. hf_dpo.tools.scoring:states_answer), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise UserError(f"--scorer {spec}: {error}") from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"--scorer {spec}: module {module_name} has no function {function_name!r}")
    return function


def scorer_names(specs: Sequence[str]) -> list[str]:
    """A short name per ``module:function`` spec: the function's name, or the whole spec where two share one."""
    short = [spec.rpartition(":")[2] for spec in specs]
    return [name if short.count(name) == 1 else spec for name, spec in zip(short, specs)]


# ---- the demo's checks as scorers (rows need the demo's ``answers`` column) ---------------------------------------


def _answers(row: dict[str, Any], scorer: str) -> list[str]:
    if "answers" not in row:
        columns = ", ".join(sorted(row))
        raise UserError(
            f"--scorer hf_dpo.tools.scoring:{scorer} reads each row's accepted 'answers'; the data has no such "
            f"column (it has {columns})"
        )
    return row["answers"]


def one_sentence(completion: str, row: dict[str, Any]) -> float:
    """The form the demo teaches: 1.0 for one sentence of at most 16 words with nothing around it."""
    from hf_dpo.demo.checks import one_sentence as check  # the demo's checks; only these scorers need them

    return float(check(completion, _answers(row, "one_sentence")))


def states_answer(completion: str, row: dict[str, Any]) -> float:
    """The facts: 1.0 when one of the row's accepted ``answers`` appears anywhere in the answer."""
    from hf_dpo.demo.checks import states_answer as check

    return float(check(completion, _answers(row, "states_answer")))


def bare_answer(completion: str, row: dict[str, Any]) -> float:
    """Exact match: 1.0 when the whole answer is one of the row's accepted ``answers`` (``hf_dpo:bare_qa``'s form)."""
    from hf_dpo.demo.checks import bare_answer as check

    return float(check(completion, _answers(row, "bare_answer")))


# ---- scoring both answer sets ---------------------------------------------------------------------------------------


def add_scores(records: list[dict[str, Any]], rows: list[dict[str, Any]], scorers: dict[str, BatchScorer]) -> None:
    """Score the policy's and the reference's answers with each of ``scorers`` (name -> ``score(completions, rows)
    -> scores``): each record gets ``policy_scores``, ``reference_scores`` and ``outcomes``, one entry per name
    (win, tie or loss of the policy's answer against the reference's)."""
    by_row = {row["row"]: row for row in rows}
    answer_rows = [by_row[record["row"]] for record in records]
    for name, score in scorers.items():
        for side in ("policy", "reference"):
            if records and all(side in record for record in records):
                for record, value in zip(records, score([record[side] for record in records], answer_rows)):
                    record.setdefault(f"{side}_scores", {})[name] = value
        for record in records:
            if "reference_scores" in record:
                mine, theirs = record["policy_scores"][name], record["reference_scores"][name]
                record.setdefault("outcomes", {})[name] = pair_metrics.score_outcomes([mine], [theirs])[0]


def score_summary(records: list[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per scorer: the mean score of each side and, against a reference, the policy's wins, ties, losses and win
    rate on scored answers."""
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        entry: dict[str, Any] = {}
        for side in ("policy", "reference"):
            values = [record[f"{side}_scores"][name] for record in records if f"{side}_scores" in record]
            if records and len(values) == len(records):
                entry[f"{side}_mean"] = sum(values) / len(values)
        if records and all("outcomes" in record for record in records):
            entry |= pair_metrics.win_rate([record["outcomes"][name] for record in records])
        summary[name] = entry
    return summary


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
