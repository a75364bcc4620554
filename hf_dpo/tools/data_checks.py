"""One row as training tokenizes it, and the mistakes users report that it shows: what ``hf-dpo inspect`` checks.

    tokenized = tokenize_for_inspection(row, 0, tokenizer, args)   # args: DPOTrainingArguments (the limits)
    row_warnings(row, tokenized, tokenizer)                         # [(kind, message), ...]

Rows go through :func:`hf_dpo.data.tokenization.tokenize_row` with the recipe's limits, the function
:func:`hf_dpo.data.preparation.prepare_dataset` maps over a split (a test holds the two to the same ids), and once more without
them, to see what was cut. The warnings are listed in :mod:`hf_dpo.tools.inspection`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_dpo.data.tokenization import STATUS_COLUMN, render, tokenize_row, tokenizer_adds_bos
from hf_dpo.data.vision import is_processor, text_tokenizer, tokenize_vision_row

LIMIT_NAMES = ("max_length", "max_prompt_length", "max_completion_length")
SIDES = ("chosen", "rejected")


@dataclass
class TokenizedRow:
    """One pair as training tokenizes it (``prompt``, ``completions``) and as it was before any cut (``full_*``)."""

    index: int
    status: int
    prompt: list[int]
    completions: dict[str, list[int]]
    full_prompt: list[int]
    full_completions: dict[str, list[int]]
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    images: str | None = None  # a row with images: how many, their tokens and where they sit


def _limits(args: Any) -> dict[str, Any]:
    return {**{name: getattr(args, name) for name in LIMIT_NAMES}, "truncation_mode": args.truncation_mode}


def tokenize_for_inspection(row: dict[str, Any], index: int, tokenizer: Any, args: Any) -> TokenizedRow:
    """``row`` tokenized with ``args``' limits (as training does) and without them (to see what was cut); with a
    processor, as :func:`hf_dpo.data.preparation.prepare_dataset` tokenizes a pair with a prompt (its images
    expanded)."""
    add_bos = tokenizer_adds_bos(text_tokenizer(tokenizer))
    tokenize = tokenize_vision_row if is_processor(tokenizer) and "prompt" in row else tokenize_row
    trained = tokenize(row, index, tokenizer, add_bos, **_limits(args))
    unlimited = dict.fromkeys(LIMIT_NAMES)
    full = tokenize(row, index, tokenizer, add_bos, **unlimited, truncation_mode=args.truncation_mode)
    return TokenizedRow(
        index=index,
        status=trained[STATUS_COLUMN],
        prompt=trained["prompt_input_ids"],
        completions={side: trained[f"{side}_input_ids"] for side in SIDES},
        full_prompt=full["prompt_input_ids"],
        full_completions={side: full[f"{side}_input_ids"] for side in SIDES},
    )


# ---- warnings -----------------------------------------------------------------------------------------------------


def special_strings(tokenizer: Any) -> set[str]:
    """Every special token's text (BOS, EOS, end-of-turn markers, ...)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return {*tokenizer.all_special_tokens, *(token.content for token in added.values() if token.special)}


def _special_ids(tokenizer: Any) -> set[int]:
    return {tokenizer.convert_tokens_to_ids(text) for text in special_strings(tokenizer)}


def _texts(row: dict[str, Any]) -> list[str]:
    """The text the data itself holds: plain strings, or the contents of chat messages."""
    texts = []
    for name in ("prompt", *SIDES):
        value = row.get(name)
        messages = value if isinstance(value, list) else [value]
        texts += [m.get("content") if isinstance(m, dict) else m for m in messages]
    return [text for text in texts if isinstance(text, str)]


def bos_warning(row: dict[str, Any], tokenized: TokenizedRow, tokenizer: Any) -> str | None:
    """Two BOS side by side, or a BOS the data text writes. A chat template that starts every turn with the BOS
    token (Llama-2's ``<s>[INST]``, ChatML models whose BOS is ``<|im_start|>``) does so by design: not flagged."""
    bos, bos_text = tokenizer.bos_token_id, tokenizer.bos_token
    if bos is None:
        return None
    for side, completion in tokenized.completions.items():
        sequence = [*tokenized.prompt, *completion]
        doubled = [i for i in range(1, len(sequence)) if sequence[i] == sequence[i - 1] == bos]
        if doubled:
            return (
                f"two BOS tokens in a row ({bos_text!r} at positions {doubled[0] - 1} and {doubled[0]}) in the {side} "
                "sequence: the text already starts with BOS and something adds another; remove one"
            )
    if bos_text and any(bos_text in text for text in _texts(row)):
        return (
            f"the data text contains the BOS token {bos_text!r}: it becomes a BOS in the middle of the sequence; "
            "remove it from the rows (the tokenizer or chat template adds the BOS the model expects)"
        )
    return None


def eos_warnings(tokenized: TokenizedRow, tokenizer: Any) -> list[tuple[str, str]]:
    """A completion cut before its EOS, and an end-of-turn special token that is not the EOS."""
    eos, found = tokenizer.eos_token_id, []
    special = _special_ids(tokenizer) - {eos, tokenizer.pad_token_id, tokenizer.bos_token_id}
    for side, completion in tokenized.completions.items():
        if completion and completion[-1] != eos:
            found.append(
                (
                    "no_eos",
                    f"the {side} completion was cut before its EOS ({len(tokenized.full_completions[side])} -> "
                    f"{len(completion)} tokens): the model learns answers that never end; raise max_length or "
                    "max_completion_length, or lower max_prompt_length",
                )
            )
            continue
        position = len(completion) - 2  # the token before the EOS, past whitespace a template writes
        while (
            position >= 0
            and tokenizer.decode([completion[position]]).strip() == ""
            and completion[position] not in special
        ):
            position -= 1
        if position >= 0 and completion[position] in special:
            end_of_turn = tokenizer.convert_ids_to_tokens(completion[position])
            found.append(
                (
                    "end_of_turn",
                    f"the assistant turn ends with {end_of_turn!r}, which is not the tokenizer's EOS "
                    f"{tokenizer.eos_token!r}: training appends {tokenizer.eos_token!r} after it, and generation stops "
                    f"only where it is told to; set tokenizer.eos_token = {end_of_turn!r} (and the model's "
                    "generation_config.eos_token_id) so the model learns to stop where its turn ends",
                )
            )
    return found


def template_suffix(row: dict[str, Any], index: int, tokenizer: Any) -> str | None:
    """Text a chat template writes after the assistant's answer, besides whitespace and special tokens."""
    from hf_dpo.data.formats import is_conversation, normalise_row

    normalised = normalise_row(dict(row), index)
    if not is_conversation(normalised["prompt"]):
        return None
    _, completions = render(normalised, index, tokenizer, SIDES)
    for side, text in zip(SIDES, completions):
        answer = normalised[side]
        content = answer if isinstance(answer, str) else (answer[-1].get("content") if answer else None)
        if not isinstance(content, str) or not content or content not in text:
            continue
        suffix = text[text.rfind(content) + len(content) :]
        rest = suffix
        for special in special_strings(tokenizer):
            rest = rest.replace(special, "")
        if rest.strip():
            return suffix
    return None


def separator_warning(row: dict[str, Any]) -> str | None:
    """Text rows: prompt and completion are tokenized apart, so a completion that starts right after the prompt's
    last character (no space, no newline) is learned glued to it."""
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt or prompt[-1].isspace():
        return None
    for side in SIDES:
        completion = row.get(side)
        if isinstance(completion, str) and completion and not completion[0].isspace():
            return (
                f"the {side} completion starts without a separator: {prompt[-12:]!r} + {completion[:12]!r}; the model "
                "learns to answer glued to the prompt (and TRL, which joins the strings first, tokenizes it "
                "differently); start completions with a space or end prompts with a newline"
            )
    return None


def chat_template_warning(row: dict[str, Any], tokenizer: Any) -> str | None:
    """A text prompt for a tokenizer with a chat template: the model trains on raw text, not on the chat format it
    is prompted with in use."""
    if not isinstance(row.get("prompt"), str) or not getattr(tokenizer, "chat_template", None):
        return None
    return (
        "the prompt is plain text but the tokenizer has a chat template: training reads the bare text without the "
        "template's turn markers, which is not how the model is prompted in chat; give prompt, chosen and rejected "
        'as chat messages ([{"role": "user", "content": ...}] and [{"role": "assistant", "content": ...}]) to train '
        "in the chat format (plain text is right for a base model, or for a deliberate raw-text format)"
    )


def row_warnings(row: dict[str, Any], tokenized: TokenizedRow, tokenizer: Any) -> list[tuple[str, str]]:
    """Every warning of one row, as ``(kind, message)`` (with a processor: its tokenizer's, and no template check)."""
    processor, tokenizer = is_processor(tokenizer), text_tokenizer(tokenizer)
    found = []
    if message := chat_template_warning(row, tokenizer):
        found.append(("no_chat_template", message))
    if message := bos_warning(row, tokenized, tokenizer):
        found.append(("two_bos", message))
    found += eos_warnings(tokenized, tokenizer)
    if not processor and (suffix := template_suffix(row, tokenized.index, tokenizer)) is not None:
        found.append(
            (
                "text_after_turn",
                f"the chat template writes {suffix!r} after the assistant's answer: it is trained as part of every "
                "completion; fix the template (nothing but the end-of-turn token after the answer)",
            )
        )
    if message := separator_warning(row):
        found.append(("no_separator", message))
    return found
