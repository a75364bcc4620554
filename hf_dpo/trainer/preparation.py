"""What DPOTrainer settles before the Trainer exists: its arguments, the policy and tokenizer, named eval sets, the
batch layout, and the facts about the model the step needs (a mixture-of-experts router's loss weight)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hf_dpo.config.training_arguments import DPOTrainingArguments
from hf_dpo.models.policy import model_id

logger = logging.getLogger(__name__)


def checked_args(model: Any, args: DPOTrainingArguments | None) -> DPOTrainingArguments:
    if model is None:
        raise ValueError("DPOTrainer needs a model (an instance or a name/path)")
    if args is None:
        short_name = model_id(model).replace(":", "/").split("/")[-1]  # no colon from an hf_dpo: name in a folder
        return DPOTrainingArguments(output_dir=f"{short_name or 'model'}-dpo")
    if not isinstance(args, DPOTrainingArguments):
        raise TypeError(f"args must be DPOTrainingArguments, got {type(args).__name__}")
    return args


def per_eval_split(eval_dataset: Any, function: Callable[..., Any], *extra: Any) -> Any:
    """``function(dataset, split, *extra)`` on one evaluation dataset, or on each set of a dict or
    ``DatasetDict`` of named sets (the Trainer evaluates each under the ``eval_{name}_`` prefix)."""
    if isinstance(eval_dataset, dict):
        return {name: function(dataset, f"eval_{name}", *extra) for name, dataset in eval_dataset.items()}
    return function(eval_dataset, "eval", *extra)
