"""What ``hf-dpo train`` is given, checked before anything loads: a YAML recipe's keys and values, and the flags,
against the fields the argument classes declare. Every mistake is a :class:`UserError` naming the key or flag.

    hf-dpo train recipes/demo.yaml --beta 0.2

A recipe value is checked against its field's type as the class declares it (``typing.get_type_hints``) and
converted where the command line would convert the same text: ``learning_rate: 1e-4``, a string to PyYAML (YAML 1.1
floats need a dot), is the number 0.0001 as ``--learning_rate 1e-4`` is; one ``lora_target_modules: q_proj`` is a
one-item list. Anything else is an error that says what was expected and what was given::

    recipe.yaml: lora_r: expected an integer, got sixteen (a string)
    recipe.yaml: save_strategy: expected one of no, steps, epoch, best, got false (a boolean); YAML reads no, yes,
        on and off as booleans: quote it ('no')
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml


class UserError(ValueError):
    """A mistake in what the user gave ``hf-dpo`` (a recipe, a flag, a file name): the command prints the message
    as one line, ``hf-dpo: error: <message>``, with no traceback. A ``ValueError``, so callers of the functions that
    raise it from Python catch what they caught before."""


# Fields declared `str` that take several names: a YAML list is joined with commas, as the command line writes them.
COMMA_SEPARATED = {"loss_type"}

# HfArgumentParser's string_to_bool
TRUE_WORDS, FALSE_WORDS = frozenset({"true", "yes", "t", "y", "1"}), frozenset({"false", "no", "f", "n", "0"})
_TRUE, _FALSE = TRUE_WORDS, FALSE_WORDS
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
_SINGULAR = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_GIVEN = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}


def read_recipe(path: Path) -> dict[str, Any]:
    """The ``field: value`` mapping of a YAML recipe file."""
    if not path.exists():
        raise UserError(f"{path}: no such recipe file")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a recipe file such as recipes/demo.yaml")
    try:
        with path.open(
            encoding="utf-8"
        ) as stream:  # a stream: PyYAML's error then names the file, not "<unicode string>"
            values = yaml.safe_load(stream)
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from error
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of field: value, got {_given(values)}")
    return values


def field_types(classes: Iterable[type]) -> dict[str, Any]:
    """``{field name: declared type}`` over the init fields of the dataclasses ``classes``."""
    types_by_name: dict[str, Any] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        types_by_name |= {field.name: hints[field.name] for field in dataclasses.fields(cls) if field.init}
    return types_by_name


def check_recipe(values: dict[str, Any], classes: Iterable[type], source: str) -> dict[str, Any]:
    """``values`` with each converted to its field's declared type; an unknown key or a wrong type is a
    :class:`UserError` starting with ``source`` (the recipe's path)."""
    declared = field_types(classes)
    unknown = [str(key) for key in values if key not in declared]
    if unknown:
        raise UserError(f"{source}: " + "; ".join(unknown_name(key, declared, "key") for key in unknown))
    checked = {}
    for name, value in values.items():
        if name in COMMA_SEPARATED and isinstance(value, list) and all(isinstance(item, str) for item in value):
            value = ",".join(value)
        try:
            checked[name] = convert(value, declared[name])
        except TypeMismatch:
            raise UserError(
                f"{source}: {name}: expected {expected(declared[name])}, got {_given(value)}{_hint(value)}"
            ) from None
    return checked


def unknown_name(name: str, known: Iterable[str], kind: str) -> str:
    """The line for a name that is not a field: ``unknown key 'betta' (did you mean 'beta'?)`` for a recipe key,
    ``--bta: did you mean --beta?`` for a flag."""
    closest = difflib.get_close_matches(name, list(known), n=1)
    if kind == "flag":
        return f"{name}: did you mean {closest[0]}?" if closest else f"{name}: no such flag (see hf-dpo train --help)"
    suggestion = f" (did you mean {closest[0]!r}?)" if closest else ""
    return f"unknown {kind} {name!r}{suggestion}"


def check_flags(leftover: Sequence[str], options: Iterable[str]) -> None:
    """Name what the argument parser left over: an unknown flag with the closest of ``options``, or a stray value."""
    flags = [item.split("=", 1)[0] for item in leftover if item.startswith("-")]
    if flags:
        raise UserError("; ".join(unknown_name(flag, options, "flag") for flag in flags))
    if leftover:
        raise UserError(f"unexpected argument {leftover[0]!r}: flags are --field value, after an optional recipe")


class TypeMismatch(Exception):
    """A value that the declared type does not take; :func:`check_recipe` turns it into a UserError."""


def convert(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` takes it: as it is where it already fits (a union's options in order), else
    converted as the command line converts text (``"1e-4"`` for a float, one item for a list); else TypeMismatch."""
    for strict in (True, False):
        try:
            return _convert(value, hint, strict)
        except TypeMismatch:
            continue
    raise TypeMismatch


def _convert(value: Any, hint: Any, strict: bool) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        enum_or_str = _enum_or_str(args)
        for option in (enum_or_str, type(None)) if enum_or_str else args:  # as the command line: the enum's choices
            try:
                return _convert(value, option, strict)
            except TypeMismatch:
                continue
        raise TypeMismatch
    if hint is type(None) or value is None:
        if hint is type(None) and value is None:
            return None
        raise TypeMismatch
    if origin is typing.Literal:
        for choice in args:  # `is`/type check: Literal[False] must not take 0
            if type(value) is type(choice) and value == choice:
                return choice
        raise TypeMismatch
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, str) and value in {member.value for member in hint}:
            return value
        raise TypeMismatch
    if hint in _SCALARS:
        return _SCALARS[hint](value, strict)
    if origin is list or hint is list:
        item = args[0] if args else Any
        if isinstance(value, list):
            return [convert(element, item) for element in value]
        if strict:
            raise TypeMismatch
        return [convert(value, item)]  # one value for a list, as `--field value` gives
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeMismatch
        key_type, value_type = args or (Any, Any)
        return {convert(key, key_type): convert(element, value_type) for key, element in value.items()}
    if isinstance(hint, type) and not isinstance(value, hint):  # a class a recipe cannot spell (ParallelismConfig)
        raise TypeMismatch
    return value


def _bool(value: Any, strict: bool) -> bool:
    if isinstance(value, bool):
        return value
    if not strict and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise TypeMismatch


def _int(value: Any, strict: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not strict and isinstance(value, str | float) and not isinstance(value, bool):
        number = _number(value)
        if number is not None and number.is_integer():
            return int(number)
    raise TypeMismatch


def _float(value: Any, strict: bool) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not strict and isinstance(value, str) and _number(value) is not None:
        return _number(value)
    raise TypeMismatch


def _str(value: Any, strict: bool) -> str:
    if isinstance(value, str):
        return value
    if not strict and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # `dataset_config: 2024`, as `--dataset_config 2024` reads it
    raise TypeMismatch


_SCALARS = {bool: _bool, int: _int, float: _float, str: _str}  # each: value as given, or as text converts (not strict)


def _enum_or_str(args: tuple[Any, ...]) -> Any:
    """The enum of ``Enum | str`` (or ``Enum | str | None``): a choice among its values, as on the command line."""
    options = [arg for arg in args if arg is not type(None)]
    enums = [arg for arg in options if isinstance(arg, type) and issubclass(arg, enum.Enum)]
    return enums[0] if len(options) == 2 and str in options and enums else None


def _number(text: str | float) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def expected(hint: Any) -> str:
    """What type ``hint`` takes, in words: "an integer", "a list of strings or null", "one of no, steps, epoch"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        enum_or_str = _enum_or_str(args)
        options = [enum_or_str] if enum_or_str else [arg for arg in args if arg is not type(None)]
        words = list(dict.fromkeys(expected(option) for option in options))
        return " or ".join(words + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(_yaml_text(choice) for choice in args)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(str(member.value) for member in hint)
    if origin is list or hint is list:
        item = args[0] if args else Any
        return f"a list of {_PLURAL.get(item, 'values')}" if item is not Any else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    if hint in _SINGULAR:
        return _SINGULAR[hint]
    return f"a {getattr(hint, '__name__', hint)}"


def _given(value: Any) -> str:
    if value is None:
        return "null"
    return f"{_yaml_text(value)} ({_GIVEN.get(type(value), type(value).__name__)})"


def _hint(value: Any) -> str:
    if isinstance(value, bool):
        return f"; YAML reads no, yes, on and off as booleans: quote it ('{'yes' if value else 'no'}')"
    return ""


def _yaml_text(value: Any) -> str:
    """``value`` as it would be written in the recipe: ``false``, ``[q_proj, v_proj]``, ``sixteen``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()
