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

import inspect
import json
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, IterableDatasetDict, concatenate_datasets

from hf_dpo.data.columns import ID_COLUMNS, LABEL_COLUMN, UNPAIRED_ID_COLUMNS

TEXT_COLUMNS = ("prompt", "chosen", "rejected")
UNPAIRED_COLUMNS = ("prompt", "completion", LABEL_COLUMN)
MESSAGE_COLUMNS = ("prompt", "chosen", "rejected", "completion")  # each holds text or chat messages
TOOLS_COLUMN = "tools"
ROLES = ("system", "user", "assistant", "tool")
EVAL_SPLIT_NAMES = ("test", "validation", "eval", "dev")
IMAGE_COLUMNS = ("images", "image")  # TRL's names for a vision-language preference dataset
HH_ASSISTANT_MARKER = "\n\nAssistant:"
# datasets >= 4.7 can keep free-form nested dicts as JSON (datasets.Json) instead of padding them into one struct
_KEEPS_JSON = "on_mixed_types" in inspect.signature(Dataset.from_dict).parameters


class DataFormatError(ValueError):
    """A preference row or dataset that cannot be used as given; the message names the row and field."""


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


def _check_tool_calls(where: str, role: str, tool_calls: Any) -> None:
    if role != "assistant":
        raise DataFormatError(f"{where}: a {role!r} message has 'tool_calls'; only assistant messages call tools")
    if not isinstance(tool_calls, list) or not tool_calls:
        raise DataFormatError(f"{where}: expected 'tool_calls' as a non-empty list of calls, got {tool_calls!r:.80}")
    for number, call in enumerate(tool_calls):
        # the OpenAI shape {"type": "function", "function": {...}}, or the bare function many templates also read
        function = call.get("function", call) if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments", {}) if isinstance(function, dict) else None
        if not (isinstance(name, str) and name.strip()) or not isinstance(arguments, dict | str):
            raise DataFormatError(
                f"{where}, tool call {number}: expected {{'type': 'function', 'function': {{'name': <string>, "
                f"'arguments': <dict or JSON string>}}}}, got {call!r:.80}"
            )


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
            _check_tool_calls(where, role, tool_calls)
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


def row_tools(row: dict[str, Any], index: int) -> list[dict[str, Any]] | None:
    """The row's ``tools`` (a list of JSON-schema function specs, given as such or as a JSON string), or None."""
    tools = row.get(TOOLS_COLUMN)
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as error:
            raise DataFormatError(
                f"row {index}, field 'tools': a string that is not JSON ({error.msg} at character {error.pos})"
            ) from None
    if not isinstance(tools, list | None) or not all(isinstance(tool, dict) for tool in tools or ()):
        raise DataFormatError(
            f"row {index}, field 'tools': expected a list of JSON-schema function specs (dicts), or a JSON string "
            f"of one, got {tools!r:.80}"
        )
    return tools or None  # TRL's `or None`: Llama's template renders its tool preamble even for tools=[]


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


def select_split(dataset: Any, split: str) -> Any:
    """A split of a DatasetDict: ``train`` for training, the first of test/validation/eval/dev for evaluation."""
    if not isinstance(dataset, DatasetDict | IterableDatasetDict):
        return dataset
    wanted = ("train",) if split == "train" else EVAL_SPLIT_NAMES
    for name in wanted:
        if name in dataset:
            return dataset[name]
    raise DataFormatError(
        f"the {split} dataset is a DatasetDict with splits {list(dataset)} and none is named "
        f"{' or '.join(wanted)}; pass one split, e.g. dataset[{next(iter(dataset), 'train')!r}]"
    )


def _checked_renames(mapping: dict[str, str], columns: list[str] | None, split: str) -> dict[str, str]:
    bad_targets = sorted(set(mapping.values()) - {*TEXT_COLUMNS, *UNPAIRED_COLUMNS})
    if bad_targets:
        raise DataFormatError(
            f"column_mapping maps onto {bad_targets}; targets must be among {list(TEXT_COLUMNS)} (pairs) or "
            f"{list(UNPAIRED_COLUMNS)} (unpaired rows)"
        )
    if columns is not None:
        missing = sorted(set(mapping) - set(columns))
        if missing:
            raise DataFormatError(f"column_mapping names {missing}, which the {split} dataset lacks; it has {columns}")
    renames = {source: target for source, target in mapping.items() if source != target}
    targets = list(renames.values())
    clashes = sorted({t for t in targets if targets.count(t) > 1 or (columns and t in columns and t not in renames)})
    if clashes:
        raise DataFormatError(
            f"column_mapping would create {clashes} twice (two sources, or a column of that name already exists "
            f"and is not renamed away); columns: {columns}"
        )
    return renames


def apply_column_mapping(dataset: Any, mapping: dict[str, str] | None, split: str) -> Any:
    """Rename columns per ``mapping`` ({source: prompt|chosen|rejected|completion|label})."""
    if not mapping:
        return dataset
    renames = _checked_renames(mapping, dataset.column_names, split)
    return dataset.rename_columns(renames) if renames else dataset


def _refuse_images(columns: list[str], split: str) -> None:
    # Training on the text of an image dataset would run without a word of warning and teach the model answers
    # about images it never saw.
    for name in IMAGE_COLUMNS:
        if name in columns:
            raise DataFormatError(
                f"the {split} dataset has an {name!r} column: vision-language DPO is not supported yet, and the "
                f"images would be ignored; to train on the text alone, drop the column first "
                f"(dataset.remove_columns({name!r}), or the key from each row of a list)"
            )


def is_paired(columns: list[str]) -> bool:
    """Whether the columns are those of preference pairs, as text or tokenized (else unpaired rows, or unknown)."""
    return bool({"chosen", "rejected", "chosen_input_ids", "rejected_input_ids"} & set(columns))


def _check_unpaired_columns(columns: list[str], split: str) -> None:
    missing = [name for name in UNPAIRED_COLUMNS if name not in columns]
    if missing:
        candidates = [name for name in columns if name not in UNPAIRED_COLUMNS]
        raise DataFormatError(
            f"the {split} dataset has no column(s) {missing}; it has {columns}. Unpaired rows need 'prompt', "
            "'completion' and 'label' (a bool: whether the completion is desirable); prompt/chosen/rejected pairs "
            "are taken too (each unrolled into a desirable and an undesirable row). Map other names with "
            f"column_mapping, e.g. column_mapping={{{candidates[0] if candidates else 'answer'!r}: {missing[0]!r}}}"
        )


def check_columns(columns: list[str], split: str, unpaired: bool = False) -> None:
    """The dataset must have chosen and rejected (and prompt, unless it is implicit), and no image column; for an
    ``unpaired`` run (KTO) prompt, completion and label instead, or pairs."""
    _refuse_images(columns, split)
    if not is_paired(columns):
        if unpaired:
            _check_unpaired_columns(columns, split)
            return
        found = [name for name in ("completion", LABEL_COLUMN, *UNPAIRED_ID_COLUMNS[1:]) if name in columns]
        if found:
            raise DataFormatError(
                f"the {split} dataset has {found} columns and no chosen/rejected: rows of a prompt, one completion "
                "and a label are unpaired data; use loss_type='kto' (or 'apo_zero_unpaired') to train on them, or "
                "give prompt/chosen/rejected pairs"
            )
    missing = [name for name in ("chosen", "rejected") if name not in columns]
    if missing:
        candidates = [name for name in columns if name not in TEXT_COLUMNS]
        raise DataFormatError(
            f"the {split} dataset has no column(s) {missing}; it has {columns}. Rows need 'chosen' and 'rejected' "
            "(and 'prompt', unless both completions start with it). Map other names with column_mapping, e.g. "
            f"column_mapping={{{candidates[0] if candidates else 'question'!r}: 'prompt', ...}}"
        )


def _check_encodings(row: dict[str, Any], index: int) -> None:
    """Every text of the row's prompt/chosen/rejected/completion (plain or message content) is valid UTF-8."""
    for name in MESSAGE_COLUMNS:
        value = row.get(name)
        messages = value if isinstance(value, list) else []
        texts = [value] if isinstance(value, str) else [m.get("content") for m in messages if isinstance(m, dict)]
        for text in texts:
            if isinstance(text, str):
                _check_text(index, name, text, allow_empty=True)


def rows_from_list(rows: list[Any], split: str, mapping: dict[str, str] | None = None) -> Dataset:
    """A Dataset from a list of dicts (``mapping`` applied), with our own message for rows Arrow cannot put in
    one table."""
    if not rows:
        raise DataFormatError(f"the {split} dataset has no rows")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataFormatError(f"row {index} of the {split} dataset: expected a dict, got {type(row).__name__}")
    _refuse_images(list(dict.fromkeys(key for row in rows for key in row)), split)  # before Arrow meets an image
    if mapping:
        renames = _checked_renames(mapping, list(rows[0]), split)
        rows = [{renames.get(key, key): value for key, value in row.items()} for row in rows]
    for index, row in enumerate(rows):
        _check_encodings(row, index)  # Arrow would fail on invalid text with a message naming neither row nor field
    for name in MESSAGE_COLUMNS:
        kinds = [(index, type(row.get(name)).__name__) for index, row in enumerate(rows) if name in row]
        first_kind = kinds[0][1] if kinds else None
        for index, kind in kinds:
            if kind != first_kind:
                raise DataFormatError(
                    f"row {index}, field {name!r}: is {kind} while row {kinds[0][0]} is {first_kind}; one dataset "
                    "must use one format (all text or all chat messages)"
                )
    for index, row in enumerate(rows):
        # Check first what Arrow would report without naming a row or field. Rows without both completions are
        # left to the column checks that follow column_mapping.
        if {"chosen", "rejected"} <= set(row) and not set(ID_COLUMNS) <= set(row):
            normalise_row(row, index)
        elif set(UNPAIRED_COLUMNS) <= set(row):
            normalise_unpaired_row(row, index)
    return _table(rows, split)


def _table(rows: list[dict[str, Any]], split: str) -> Dataset:
    """The rows as a Dataset, one column at a time (every key of any row a column), so an error names its column.

    Chat messages, tool specs and template arguments are built with ``on_mixed_types="use_json"``: dicts of
    different shapes keep their own keys instead of getting each other's set to None (see the module docstring).
    """
    columns = []
    for name in dict.fromkeys(key for row in rows for key in row):
        values = [row.get(name) for row in rows]
        free_form = _KEEPS_JSON and name in (*MESSAGE_COLUMNS, TOOLS_COLUMN, "chat_template_kwargs")
        try:
            columns.append(Dataset.from_dict({name: values}, **({"on_mixed_types": "use_json"} if free_form else {})))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise DataFormatError(
                f"the {split} rows cannot form one table: column {name!r} holds different types in different rows "
                f"({error})"
            ) from None
    return concatenate_datasets(columns, axis=1)
