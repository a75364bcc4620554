"""A run's settings: `DPOTrainingArguments`, the command's model/data/run arguments, and recipes."""

from hf_dpo.config.training_arguments import DPOTrainingArguments

__all__ = ["DPOTrainingArguments"]
