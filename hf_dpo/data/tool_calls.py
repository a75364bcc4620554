"""Tool-calling rows, as TRL takes them: assistant messages with ``tool_calls``, ``tool`` messages with their
results, and a ``tools`` column of JSON-schema function specs the chat template receives (see
:mod:`hf_dpo.data.formats` for where they sit in a row)."""

from __future__ import annotations

import json
from typing import Any

from hf_dpo.data.errors import DataFormatError

TOOLS_COLUMN = "tools"


def check_tool_calls(where: str, role: str, tool_calls: Any) -> None:
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
