"""Recognising and checking the shapes preference rows come in, before anything is tokenized.

Accepted rows (after ``column_mapping`` renames columns), pairs:

- **standard**: ``prompt``, ``chosen``, ``rejected`` strings;
- **conversational**: the same columns as chat messages (lists of ``{"role", "content"}``), multi-turn prompts and
  system messages included; a completion may also be a bare string (the assistant's answer);
- **implicit prompt**: only ``chosen`` and ``rejected``, each a whole text or conversation; their shared start is
  the prompt: for text, up to the last shared Anthropic-HH marker ``"\n\nAssistant:"`` if there is one, else up to
  the last space before they differ (so text without spaces, such as Chinese, needs a prompt column); for
  conversations, up to the last shared message before the final assistant answer;
- **tool calling** (conversational, as TRL): an assistant message may call tools with ``tool_calls`` (a list of
  ``{"type": "function", "function": {"name", "arguments"}}``) and ``content`` None; ``tool`` messages carry the
  results; an optional ``tools`` column holds each row's tools as a list of JSON-schema function specs (or a JSON
  string of one), which the chat template receives as ``tools``. A prompt may end with a tool result; a completion
  may hold tool calls and their results and ends with an assistant message (an answer or a call).

and unpaired rows (KTO, as TRL's ``KTOTrainer`` takes them): ``prompt``, ``completion`` and ``label``, a bool
(True: the completion is desirable), the prompt and completion in any of the shapes above (a prompt is required).

Arrow gives every message of a column every key any message has, set to None where a message lacks it; those None
keys are dropped before the checks (so the same user turn in the chosen and rejected columns is still the same
message), as ``apply_chat_template`` drops them before rendering. Nested dicts of different shapes (tool arguments,
the parameters of different tools) are padded the same way, one level down, where a None can no longer be told
from a real one and reaches the template: build such a dataset with ``on_mixed_types="use_json"`` or
``datasets.Json()`` features (as TRL's documentation advises), or give ``tools`` as JSON strings. A list of rows
handed to the trainer is built that way here.

Every problem raises :class:`DataFormatError` (a ``ValueError``) naming the row index, the field and what was
expected; nothing is repaired silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_dpo.data.columns import LABEL_COLUMN
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.tool_calls import TOOLS_COLUMN, check_tool_calls, row_tools

TEXT_COLUMNS = ("prompt", "chosen", "rejected")
UNPAIRED_COLUMNS = ("prompt", "completion", LABEL_COLUMN)
MESSAGE_COLUMNS = ("prompt", "chosen", "rejected", "completion")  # each holds text or chat messages
ROLES = ("system", "user", "assistant", "tool")
HH_ASSISTANT_MARKER = "\n\nAssistant:"


def is_conversation(value: Any) -> bool:
    """A non-empty list of ``{"role", "content"}`` messages."""
    return isinstance(value, list) and len(value) > 0 and all(isinstance(m, dict) and "role" in m for m in value)


def _check_text(index: int, name: str, value: str, allow_empty: bool) -> None:
    if not allow_empty and not value.strip():
        raise DataFormatError(f"row {index}, field {name!r}: expected non-empty text, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DataFormatError(
            f"row {index}, field {name!r}: not valid UTF-8 text ({error.reason} at character {error.start}); "
            "decode the source file with the right encoding"
        ) from None


def _without_none(messages: list[Any]) -> list[Any]:
    """The messages without the keys Arrow set to None (see the module docstring); anything else as given."""
    return [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in messages]


def _check_message_shapes(index: int, name: str, messages: list[Any]) -> None:
    for position, message in enumerate(messages):
        where = f"row {index}, field {name!r}, message {position}"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise DataFormatError(f"{where}: expected a dict with string 'role' and 'content', got {message!r:.80}")
        role = message["role"]
        if role not in ROLES:
            raise DataFormatError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            check_tool_calls(where, role, tool_calls)
        content = message.get("content")
        if tool_calls and content is None:  # an assistant turn that only calls tools
            continue
        if not isinstance(content, str):
            either = " or 'tool_calls'" if role == "assistant" else ""
            raise DataFormatError(f"{where}: expected string 'content'{either}, got {type(content).__name__}")
        # an assistant turn must say something, in words or in tool calls
        _check_text(index, f"{name}[{position}].content", content, allow_empty=role != "assistant" or bool(tool_calls))


def _check_messages(index: int, name: str, messages: list[Any], is_prompt: bool) -> None:
    _check_message_shapes(index, name, messages)
    for position, message in enumerate(messages):
        where = f"row {index}, field {name!r}, message {position}"
        role = message["role"]
        if role == "system" and position > 0:
            raise DataFormatError(f"{where}: a system message may only come first")
        if position > 0 and role == messages[position - 1]["role"] and role in ("user", "assistant"):
            raise DataFormatError(f"{where}: two {role!r} messages in a row; user and assistant turns must alternate")
        if not is_prompt and (role in ("user", "system") or (position == 0 and role != "assistant")):
            raise DataFormatError(
                f"{where}: a completion holds the assistant's answer (assistant messages, and tool results between "
                f"them) and starts with an assistant message; got a {role!r} message"
            )
    if not is_prompt and messages[-1]["role"] != "assistant":
        raise DataFormatError(
            f"row {index}, field {name!r}: the completion ends with a {messages[-1]['role']!r} message; it must end "
            "with the assistant's own turn (an answer or a tool call), not with what a tool returned"
        )
    if is_prompt and messages[-1]["role"] == "assistant":
        raise DataFormatError(
            f"row {index}, field {name!r}: the prompt ends with an assistant turn; it must end where the assistant "
            "is to answer (a user or tool message)"
        )


def check_field(index: int, name: str, value: Any) -> None:
    """Raise :class:`DataFormatError` unless ``value`` is usable text or a usable list of chat messages."""
    if isinstance(value, str):
        _check_text(index, name, value, allow_empty=name == "prompt")
    elif isinstance(value, list) and value:
        _check_messages(index, name, value, is_prompt=name == "prompt")
    else:
        raise DataFormatError(
            f"row {index}, field {name!r}: expected a string or a non-empty list of chat messages, "
            f"got {type(value).__name__} {value!r:.80}"
        )


def _split_text(chosen: str, rejected: str, index: int) -> tuple[str, str, str]:
    shared = 0
    for chosen_char, rejected_char in zip(chosen, rejected):
        if chosen_char != rejected_char:
            break
        shared += 1
    marker = chosen.rfind(HH_ASSISTANT_MARKER, 0, shared)
    if marker >= 0:  # Anthropic HH: the prompt ends with the last shared assistant marker, whatever follows
        end = marker + len(HH_ASSISTANT_MARKER)
    else:
        end = shared
        while end > 0 and not chosen[end - 1].isspace():  # back to the start of the word they differ in
            end -= 1
        while end > 0 and chosen[end - 1].isspace():  # the space before the answer belongs to the answer
            end -= 1
    if end == 0:
        raise DataFormatError(
            f"row {index}: no 'prompt' column, and 'chosen' and 'rejected' share no leading text up to a space to "
            "take as the prompt; add a prompt column or map one with column_mapping"
        )
    return chosen[:end], chosen[end:], rejected[end:]


def _split_conversation(chosen: list[Any], rejected: list[Any], index: int) -> tuple[list, list, list]:
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    while shared > 0 and (shared >= len(chosen) or chosen[shared].get("role") != "assistant"):
        shared -= 1  # the prompt ends right before an assistant turn
    if shared == 0:
        raise DataFormatError(
            f"row {index}: no 'prompt' column, and 'chosen' and 'rejected' share no leading messages that end "
            "before an assistant turn; add a prompt column or map one with column_mapping"
        )
    for name, rest in (("chosen", chosen[shared:]), ("rejected", rejected[shared:])):
        turn = next((i for i, m in enumerate(rest) if m.get("role") in ("user", "system")), None)
        if turn is not None:
            raise DataFormatError(
                f"row {index}, field {name!r}: after the shared prompt (messages 0-{shared - 1}) it still has a "
                f"{rest[turn]['role']!r} turn (message {shared + turn}); the conversations must differ only in the "
                "final assistant answer, or give a prompt column"
            )
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _split_prompt(row: dict[str, Any], index: int) -> dict[str, Any]:
    """An implicit prompt split off the shared start of ``chosen`` and ``rejected``."""
    chosen, rejected = row["chosen"], row["rejected"]
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if isinstance(value, str):
            _check_text(index, name, value, allow_empty=False)
        elif is_conversation(value):
            _check_message_shapes(index, name, value)
    if isinstance(chosen, str) and isinstance(rejected, str):
        prompt, chosen, rejected = _split_text(chosen, rejected, index)
    elif is_conversation(chosen) and is_conversation(rejected):
        prompt, chosen, rejected = _split_conversation(chosen, rejected, index)
    else:
        raise DataFormatError(
            f"row {index}: 'chosen' and 'rejected' must both be text or both be chat messages, got "
            f"{type(chosen).__name__} and {type(rejected).__name__}"
        )
    return {**row, "prompt": prompt, "chosen": chosen, "rejected": rejected}


def _without_arrow_nones(row: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _without_none(value) if name in MESSAGE_COLUMNS and isinstance(value, list) else value
        for name, value in row.items()
    }


def _checked(row: dict[str, Any], index: int, completion_names: tuple[str, ...]) -> dict[str, Any]:
    """The row's prompt and completions checked, in one format, with its template inputs checked and ``tools``
    parsed."""
    for name in ("prompt", *completion_names):
        check_field(index, name, row[name])
    if not is_conversation(row["prompt"]) and any(is_conversation(row[name]) for name in completion_names):
        completions = f"{'/'.join(completion_names)} {'are' if len(completion_names) > 1 else 'is'}"
        raise DataFormatError(f"row {index}: prompt is a string but {completions} chat messages; use one format")
    template_kwargs = row.get("chat_template_kwargs")
    if template_kwargs is not None and not isinstance(template_kwargs, dict):
        raise DataFormatError(
            f"row {index}, field 'chat_template_kwargs': expected a dict, got {type(template_kwargs).__name__}"
        )
    if TOOLS_COLUMN in row:
        tools = row_tools(row, index)
        if tools is not None and not is_conversation(row["prompt"]):
            raise DataFormatError(
                f"row {index}, field 'tools': tools are given to a chat template, and this row is text; give the "
                "rows as chat messages, or drop the tools"
            )
        row[TOOLS_COLUMN] = tools
    return row


def normalise_row(row: dict[str, Any], index: int) -> dict[str, Any]:
    """The row as ``prompt``/``chosen``/``rejected``, checked, with ``tools`` parsed (None when it has none) and
    the None keys Arrow adds to messages dropped; an implicit prompt is split off here."""
    missing = [name for name in ("chosen", "rejected") if name not in row]
    if missing:
        raise DataFormatError(f"row {index}: no field(s) {missing}; it has {sorted(row)}")
    row = _without_arrow_nones(row)
    if "prompt" not in row:
        row = _split_prompt(row, index)
    return _checked(row, index, ("chosen", "rejected"))


def check_label(index: int, label: Any) -> None:
    """Raise :class:`DataFormatError` unless ``label`` is a bool (Python's or numpy's), as TRL's KTOTrainer takes."""
    if isinstance(label, bool | np.bool_):
        return
    hint = "every row needs one" if label is None else "turn the labels into bools first"
    if isinstance(label, int | np.integer) and label in (0, 1):
        hint = "cast 0/1 labels first: dataset.cast_column('label', datasets.Value('bool'))"
    raise DataFormatError(
        f"row {index}, field 'label': expected a bool (True: the completion is desirable, False: undesirable), as "
        f"TRL's KTOTrainer takes it; got {type(label).__name__} {label!r:.40}; {hint}"
    )


def normalise_unpaired_row(row: dict[str, Any], index: int) -> dict[str, Any]:
    """The unpaired row as ``prompt``/``completion``/``label``, checked as :func:`normalise_row` checks a pair."""
    missing = [name for name in UNPAIRED_COLUMNS if name not in row]
    if missing:
        raise DataFormatError(f"row {index}: no field(s) {missing}; it has {sorted(row)}")
    check_label(index, row[LABEL_COLUMN])
    return _checked(_without_arrow_nones(row), index, ("completion",))


def check_encodings(row: dict[str, Any], index: int) -> None:
    """Every text of the row's prompt/chosen/rejected/completion (plain or message content), and of each of a list
    row's answers, is valid UTF-8."""
    answers = row.get("completions") if isinstance(row.get("completions"), list) else []
    fields = [(name, row.get(name)) for name in MESSAGE_COLUMNS]
    fields += [(f"completions[{position}]", answer) for position, answer in enumerate(answers)]
    for name, value in fields:
        messages = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        texts = [value] if isinstance(value, str) else [t for m in messages if isinstance(m, dict) for t in m.values()]
        for text in texts:
            if isinstance(text, str):
                _check_text(index, name, text, allow_empty=True)
