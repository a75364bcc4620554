"""hf_dpo.config.recipe: YAML values against the types the argument classes declare, converted as the command line would
convert the same text, and every mistake named with what was expected and what was given."""

import dataclasses
import enum
import typing
from typing import Any, Literal

import pytest
import yaml

from hf_dpo.config.recipe import TypeMismatch, UserError, check_recipe, convert, expected, field_types, read_recipe
from hf_dpo.config.run_arguments import ARGUMENT_CLASSES
from hf_dpo.config.training_arguments import DPOTrainingArguments

CLASSES = (*ARGUMENT_CLASSES, DPOTrainingArguments)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def _yaml(text: str) -> Any:
    return yaml.safe_load(f"value: {text}")["value"]


@pytest.mark.parametrize(
    ("hint", "yaml_text", "value"),
    [
        (bool, "true", True),
        (bool, "'false'", False),  # as --flag false
        (int, "16", 16),
        (int, "'16'", 16),
        (int, "1e3", 1000),  # a string to PyYAML; an integral number
        (float, "1e-4", 1e-4),  # PyYAML: a string (YAML 1.1 floats need a dot); the command line: a float
        (float, "1.0e-4", 1e-4),
        (float, "5", 5.0),  # as --warmup_steps 5 gives
        (str, "all-linear", "all-linear"),
        (str, "2024", "2024"),  # as --dataset_config 2024 gives
        (list[str], "[q_proj, v_proj]", ["q_proj", "v_proj"]),
        (list[str], "q_proj", ["q_proj"]),  # one value for a list, as one flag value gives
        (list[float] | None, "[1, '5e-1']", [1.0, 0.5]),
        (list[float] | None, "null", None),
        (int | None, "null", None),
        (dict[str, str] | str | None, "{question: prompt}", {"question": "prompt"}),
        (dict[str, str] | str | None, '\'{"question": "prompt"}\'', '{"question": "prompt"}'),  # JSON text
        (None | str | list[str], "none", "none"),  # report_to: the string "none", not YAML's null
        (None | str | list[str], "[wandb, tensorboard]", ["wandb", "tensorboard"]),
        (int | str | None, "8", 8),
        (int | str | None, "auto", "auto"),
        (str | bool, "true", True),
        (str | None | Literal[False], "false", False),
        (Literal["keep_end", "keep_start"], "keep_start", "keep_start"),
        (Colour | str, "red", "red"),  # an enum or str field takes the enum's values, as on the command line
        (
            dict[str, Any] | str | None,
            "{dtype: bfloat16, device_map: {'': 0}}",
            {"dtype": "bfloat16", "device_map": {"": 0}},
        ),
    ],
)
def test_values_are_converted_as_the_command_line_converts_text(hint, yaml_text, value):
    converted = convert(_yaml(yaml_text), hint)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize(
    ("hint", "yaml_text"),
    [
        (bool, "1"),
        (bool, "maybe"),
        (int, "true"),  # a bool is an int to Python, never to a recipe
        (int, "16.5"),
        (int, "sixteen"),
        (float, "true"),
        (float, "fast"),
        (str, "no"),  # YAML 1.1: a boolean
        (str, "1.5"),
        (str, "[a, b]"),
        (int, "null"),
        (list[str], "{a: b}"),
        (list[int], "[1, two]"),
        (dict[str, str] | None, "[a]"),
        (dict[str, bool] | None, "{a: maybe}"),
        (Literal[False] | None, "0"),
        (Colour | str, "green"),
        (Literal["keep_end", "keep_start"], "end"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(hint, yaml_text):
    with pytest.raises(TypeMismatch):
        convert(_yaml(yaml_text), hint)


@pytest.mark.parametrize(
    ("hint", "words"),
    [
        (bool, "true or false"),
        (int | None, "an integer or null"),
        (float, "a number"),
        (list[str], "a list of strings"),
        (list[float] | None, "a list of numbers or null"),
        (None | str | list[str], "a string or a list of strings or null"),
        (dict[str, str] | str | None, "a mapping or a string or null"),
        (Colour | str, "one of red, blue"),
        (Literal["keep_end", "keep_start"], "one of keep_end, keep_start"),
    ],
)
def test_expected_types_in_words(hint, words):
    assert expected(hint) == words


def test_every_declared_field_type_is_one_the_checker_knows():
    """Each field of the four argument classes takes its own default back through the checker (a new kind of type
    that the checker does not know fails here, not in a user's recipe)."""
    for cls in CLASSES:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if not field.init or field.default is dataclasses.MISSING:
                continue
            default = field.default.value if isinstance(field.default, enum.Enum) else field.default
            assert convert(default, hints[field.name]) == default, field.name


def test_check_recipe_names_the_key_what_was_expected_and_what_was_given():
    values = {"lora_target_modules": "q_proj", "loss_type": ["sigmoid", "sft"], "learning_rate": "1e-4"}
    assert check_recipe(values, CLASSES, "r.yaml") == {
        "lora_target_modules": ["q_proj"],
        "loss_type": "sigmoid,sft",  # a str field taking several names: commas, as on the command line
        "learning_rate": 1e-4,
    }
    with pytest.raises(UserError, match=r"^r.yaml: max_steps: expected an integer, got 1.5 \(a number\)$"):
        check_recipe({"max_steps": 1.5}, CLASSES, "r.yaml")
    with pytest.raises(UserError, match=r"expected a list of strings, got \{a: b\} \(a mapping\)$"):
        check_recipe({"lora_target_modules": {"a": "b"}}, CLASSES, "r.yaml")
    with pytest.raises(
        UserError, match=r"save_strategy: expected one of no, steps, epoch, best, got false \(a boolean\); "
    ):
        check_recipe({"save_strategy": False}, CLASSES, "r.yaml")
    with pytest.raises(
        UserError, match=r"unknown key 'lora_alpah' \(did you mean 'lora_alpha'\?\); unknown key 'zzz'$"
    ):
        check_recipe({"lora_alpah": 8, "zzz": 1}, CLASSES, "r.yaml")


def test_field_types_cover_every_field_of_the_classes():
    assert {"beta", "lora_r", "dataset_name", "task", "learning_rate"} <= set(field_types(CLASSES))


def test_reading_a_recipe(tmp_path):
    with pytest.raises(UserError, match=r"nope.yaml: no such recipe file$"):
        read_recipe(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a folder; give a recipe file"):
        read_recipe(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("beta: [0.1\n")
    with pytest.raises(UserError, match=r"r.yaml: not valid YAML: while parsing a flow sequence .* line 1"):
        read_recipe(recipe)
    recipe.write_text("- beta\n")
    with pytest.raises(UserError, match=r"expected a mapping of field: value, got \[beta\] \(a list\)"):
        read_recipe(recipe)
    recipe.write_text("# only a comment\n")
    assert read_recipe(recipe) == {}
