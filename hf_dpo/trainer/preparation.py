"""What DPOTrainer settles before the Trainer exists: its arguments, the policy and tokenizer, named eval sets, the
batch layout, the facts about the model the step needs (a mixture-of-experts router's loss weight), and whether the
run reads images (a vision-language model, its processor, rows with images)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hf_dpo.config.training_arguments import DPOTrainingArguments
from hf_dpo.data.columns import IMAGE_COLUMNS
from hf_dpo.data.vision import is_processor
from hf_dpo.models.policy import model_id
from hf_dpo.models.vision import is_vision_language
from hf_dpo.models.wrappers import base_model

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


def image_columns_of(dataset: Any) -> list[str]:
    """The image columns a dataset (a list of rows, a Dataset, a stream, or a dict of named sets) has."""
    if dataset is None:
        return []
    if isinstance(dataset, dict):
        return sorted({name for split in dataset.values() for name in image_columns_of(split)})
    if isinstance(dataset, list):
        keys = {key for row in dataset if isinstance(row, dict) for key in row}
    else:
        keys = set(getattr(dataset, "column_names", None) or ())
    return [name for name in IMAGE_COLUMNS if name in keys]


def check_vision_run(model: Any, processing_class: Any, dataset: Any, split: str) -> None:
    """Rows with images need a vision-language model and its processor: a clear error for each other pairing (a
    tokenizer with a text-only model keeps the data checks' own message, which says how to drop the images)."""
    columns = image_columns_of(dataset)
    if not columns:
        return
    if not is_processor(processing_class):
        if is_vision_language(model):
            raise ValueError(
                f"the {split} dataset has an {columns[0]!r} column and the processing class is a tokenizer "
                f"({type(processing_class).__name__}): a vision-language model reads images through its processor; "
                "pass processing_class=AutoProcessor.from_pretrained(<the model's name>)"
            )
        return
    if not is_vision_language(model):
        raise ValueError(
            f"the {split} dataset has an {columns[0]!r} column and a processor was given, but the model "
            f"({type(base_model(model)).__name__}) is text-only (its config has no vision_config): its images would "
            "be ignored; give a vision-language model, or drop the column to train on the text alone"
        )


def image_processor(processing_class: Any, *datasets: Any) -> Any:
    """The processor, when a prepared split has images (the collator processes them); else ``None``."""
    if not is_processor(processing_class):
        return None
    return processing_class if any(image_columns_of(dataset) for dataset in datasets) else None
