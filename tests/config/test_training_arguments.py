"""hf_dpo.DPOTrainingArguments: DPO defaults and validation messages that name the field and the value."""

import dataclasses
import warnings

import pytest

from hf_dpo import DPOTrainingArguments


def _args(**overrides):
    return DPOTrainingArguments(output_dir="unused", report_to="none", **overrides)


def test_defaults():
    args = _args()
    assert (args.beta, args.loss_type, args.label_smoothing, args.reference_free) == (0.1, "sigmoid", 0.0, False)
    assert (args.max_length, args.max_prompt_length, args.truncation_mode) == (1024, None, "keep_start")
    assert (args.learning_rate, args.logging_steps, args.remove_unused_columns) == (1e-6, 10, False)
    assert args.disable_dropout is True


def test_activation_checkpointing_is_on_unless_set_under_either_name():
    """TRL's default (gradient_checkpointing=True) without transformers' deprecation warning for a default; off is one
    field away, under the current name (no warning) or TRL's (transformers' FutureWarning, as TRL users get it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default = _args()
        off = _args(activation_checkpointing=False)
    assert default.activation_checkpointing is True and default.gradient_checkpointing is True
    assert off.activation_checkpointing is False and off.gradient_checkpointing is False
    with pytest.warns(FutureWarning, match="gradient_checkpointing"):
        trl_style = _args(gradient_checkpointing=False)
    assert trl_style.activation_checkpointing is False and trl_style.gradient_checkpointing is False
    assert dataclasses.replace(off, beta=0.2).activation_checkpointing is False  # a copy keeps the choice


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"beta": 0.0}, "beta=0.0 must be > 0"),
        ({"beta": -1.0}, "beta=-1.0 must be > 0"),
        ({"loss_type": "dpo"}, "loss_type='dpo' must be one of sigmoid"),
        ({"label_smoothing": 0.5}, r"label_smoothing=0.5 must be in \[0, 0.5\)"),
        ({"label_smoothing": -0.1}, r"label_smoothing=-0.1 must be in \[0, 0.5\)"),
        ({"max_length": 0}, "max_length=0 must be a positive integer or None"),
        ({"max_length": 128, "max_prompt_length": 128}, "max_prompt_length=128 must be < max_length=128"),
        ({"truncation_mode": "middle"}, "truncation_mode='middle' must be one of keep_end, keep_start"),
        ({"model_init_kwargs": "{bad json"}, "model_init_kwargs='{bad json' is not valid JSON"),
        ({"model_init_kwargs": 3}, "model_init_kwargs=3 must be a dict"),
    ],
)
def test_bad_values_are_rejected_with_field_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        _args(**overrides)


def test_model_init_kwargs_from_json_string():
    assert _args(model_init_kwargs='{"dtype": "bfloat16"}').model_init_kwargs == {"dtype": "bfloat16"}


def test_every_dpo_field_has_help():
    from transformers import TrainingArguments

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    for f in dataclasses.fields(DPOTrainingArguments):
        if f.name not in base or f.name in ("learning_rate", "logging_steps", "remove_unused_columns"):
            assert f.metadata.get("help"), f.name
