"""One row's text -> token ids: chat templates, EOS/BOS rules and truncation, the same for pairs and unpaired rows.

The prompt and each completion are tokenized apart and joined as ids, so the prompt is byte-for-byte the same
prefix of every sequence built from it. Chat messages are rendered with the tokenizer's chat template: the prompt
with ``add_generation_prompt``, prompt + completion without, each with the row's ``tools`` and
``chat_template_kwargs``.

Rules:
- exactly one EOS ends each completion: it is appended unless the text (as a chat template renders an assistant
  turn) already ends with it, and whitespace a template writes after it is dropped;
- one BOS starts the prompt if the tokenizer adds one to plain text, never two;
- ``truncation_mode="keep_start"`` (TRL's default) keeps the start of prompt + completion: a prompt longer than
  ``max_prompt_length`` keeps its start, and each sequence is cut at ``max_length``, as TRL cuts
  ``(prompt + completion)[:max_length]``;
- ``keep_end`` keeps the end of the prompt, next to the answer: its last ``max_prompt_length`` tokens or, without that
  budget, the tokens that leave room within ``max_length`` for the longer completion (TRL's deprecated ``keep_end``
  cuts each sequence's start apart, so its chosen and rejected sequences can see different prompts; here one cut
  serves both); a prompt cut this way keeps its BOS (it replaces the first kept token);
- completions always keep their start: their first ``max_completion_length`` tokens, then what fits ``max_length``;
- a row whose prompt leaves no room for a completion within ``max_length`` is marked DROPPED_NO_ROOM (as TRL drops a
  row whose prompt alone fills ``max_length``), a pair whose chosen and rejected completions are identical (no
  preference to learn), also after truncation, DROPPED_IDENTICAL; :mod:`hf_dpo.data.preparation` counts and drops
  them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hf_dpo.data.columns import LABEL_COLUMN
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.formats import is_conversation, normalise_row, normalise_unpaired_row

KEPT, TRUNCATED, DROPPED_NO_ROOM, DROPPED_IDENTICAL = 0, 1, 2, 3
STATUS_COLUMN = "_hf_dpo_status"


def render(row: dict[str, Any], index: int, tokenizer: Any, completion_names: Sequence[str]) -> tuple[str, list[str]]:
    """A normalised row's prompt and the named completions as text (chat messages rendered with the tokenizer's
    chat template)."""
    prompt = row["prompt"]
    if not is_conversation(prompt):
        return prompt, [row[name] for name in completion_names]

    if getattr(tokenizer, "chat_template", None) is None:
        raise DataFormatError(
            f"row {index}: the prompt is a list of chat messages but the tokenizer has no chat_template; set "
            "tokenizer.chat_template or give the rows as text"
        )
    # TRL's order: a row's chat_template_kwargs may override its tools
    template_kwargs = {"tools": row.get("tools"), **(row.get("chat_template_kwargs") or {})}
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **template_kwargs)
    completions = []
    for name in completion_names:
        completion = row[name]
        if isinstance(completion, str):  # a bare answer to a chat prompt is the assistant's turn
            completion = [{"role": "assistant", "content": completion}]
        full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False, **template_kwargs)
        if not full_text.startswith(prompt_text):
            raise DataFormatError(
                f"row {index}, field {name!r}: the chat template renders prompt+{name} with a different start than "
                f"the prompt alone, so the prompt cannot be masked; rendered prompt ends {prompt_text[-60:]!r}"
            )
        completions.append(full_text[len(prompt_text) :])
    return prompt_text, completions


def _tokenize_completion(text: str, tokenizer: Any) -> list[int]:
    eos_token, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    stripped = text.rstrip()
    if eos_token and stripped.endswith(eos_token):
        text = stripped  # a template's newline after the end-of-turn token is not part of the answer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids or ids[-1] != eos_id:
        ids = [*ids, eos_id]
    return ids


def _tokenize_prompt(text: str, tokenizer: Any, add_bos: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos_id = tokenizer.bos_token_id
    if add_bos and (not ids or ids[0] != bos_id):
        ids = [bos_id, *ids]
    while len(ids) > 1 and bos_id is not None and ids[0] == ids[1] == bos_id:
        ids = ids[1:]
    return ids


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer starts plain text with BOS when asked for special tokens."""
    bos_id = tokenizer.bos_token_id
    if bos_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos_id


def truncate(
    prompt_ids: Sequence[int],
    completions: Sequence[Sequence[int]],
    max_length: int | None,
    max_prompt_length: int | None,
    max_completion_length: int | None,
    truncation_mode: str,
) -> tuple[list[int], list[list[int]], int]:
    """Apply the prompt budget, then the completion budget to each completion; returns the ids and a status (KEPT,
    TRUNCATED or DROPPED_NO_ROOM, which leaves the completions as they were). See the module docstring.

    >>> truncate([1, 2, 3, 4], [[5, 6, 7], [8]], max_length=5, max_prompt_length=2,
    ...          max_completion_length=None, truncation_mode="keep_end")
    ([3, 4], [[5, 6, 7], [8]], 1)
    >>> truncate([1, 2, 3, 4], [[5, 6, 7], [8]], max_length=5, max_prompt_length=None,
    ...          max_completion_length=None, truncation_mode="keep_start")  # (prompt + completion)[:5]
    ([1, 2, 3, 4], [[5], [8]], 1)
    >>> truncate([1, 2, 3, 4], [[5, 6, 7], [8]], max_length=5, max_prompt_length=None,
    ...          max_completion_length=None, truncation_mode="keep_end")  # room for the longer completion
    ([3, 4], [[5, 6, 7], [8]], 1)
    """
    prompt, kept = list(prompt_ids), [list(ids) for ids in completions]
    keep_end = truncation_mode == "keep_end"
    if max_prompt_length is not None and len(prompt) > max_prompt_length:
        prompt = prompt[-max_prompt_length:] if keep_end else prompt[:max_prompt_length]
    budgets = [max_completion_length] if max_completion_length is not None else []
    if max_length is not None:
        if keep_end and max_prompt_length is None:
            longest = max((len(ids[: min(budgets, default=len(ids))]) for ids in kept), default=0)
            room = max(max_length - longest, 1)  # one prompt token at least: it predicts the first completion token
            prompt = prompt[-room:]
        if len(prompt) >= max_length:
            return prompt, kept, DROPPED_NO_ROOM
        budgets.append(max_length - len(prompt))
    if budgets:
        kept = [ids[: min(budgets)] for ids in kept]
    cut = len(prompt) < len(prompt_ids) or any(len(ids) < len(original) for ids, original in zip(kept, completions))
    return prompt, kept, TRUNCATED if cut else KEPT


def _tokenize(
    prompt_text: str, completion_texts: list[str], index: int, tokenizer: Any, add_bos: bool, limits: dict[str, Any]
) -> tuple[list[int], list[list[int]], int]:
    """The prompt's ids, each completion's ids and the truncation status (see :func:`truncate`)."""
    prompt_ids = _tokenize_prompt(prompt_text, tokenizer, add_bos)
    if not prompt_ids:
        # nothing precedes the completion, so its first token has no position to be predicted from
        raise DataFormatError(
            f"row {index}, field 'prompt': empty, and the tokenizer adds no BOS token to start the sequence; "
            "give a prompt of at least one token"
        )
    completions = [_tokenize_completion(text, tokenizer) for text in completion_texts]
    bos_id = tokenizer.bos_token_id
    starts_with_bos = prompt_ids[0] == bos_id
    prompt_ids, completions, status = truncate(prompt_ids, completions, **limits)
    if starts_with_bos and prompt_ids and prompt_ids[0] != bos_id:
        prompt_ids = [bos_id, *prompt_ids[1:]]  # keep_end cut the BOS off: put it back
    return prompt_ids, completions, status


def tokenize_row(row: dict[str, Any], index: int, tokenizer: Any, add_bos: bool, **limits: Any) -> dict[str, Any]:
    """One raw pair -> ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids`` and a status column."""
    prompt_text, completion_texts = render(normalise_row(row, index), index, tokenizer, ("chosen", "rejected"))
    prompt_ids, (chosen_ids, rejected_ids), status = _tokenize(
        prompt_text, completion_texts, index, tokenizer, add_bos, limits
    )
    if chosen_ids == rejected_ids:  # identical, or they differed only past the cut
        status = DROPPED_IDENTICAL
    return {
        "prompt_input_ids": prompt_ids,
        "chosen_input_ids": chosen_ids,
        "rejected_input_ids": rejected_ids,
        STATUS_COLUMN: status,
    }


def tokenize_unpaired_row(
    row: dict[str, Any], index: int, tokenizer: Any, add_bos: bool, **limits: Any
) -> dict[str, Any]:
    """One raw unpaired row -> ``prompt_input_ids``, ``completion_input_ids``, ``label`` (a Python bool) and a
    status column."""
    row = normalise_unpaired_row(row, index)
    prompt_text, completion_texts = render(row, index, tokenizer, ("completion",))
    prompt_ids, (completion_ids,), status = _tokenize(prompt_text, completion_texts, index, tokenizer, add_bos, limits)
    return {
        "prompt_input_ids": prompt_ids,
        "completion_input_ids": completion_ids,
        LABEL_COLUMN: bool(row[LABEL_COLUMN]),  # a numpy bool becomes Python's
        STATUS_COLUMN: status,
    }
