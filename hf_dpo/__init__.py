"""hf_dpo: Direct Preference Optimization as a drop-in `transformers.Trainer`."""

__version__ = "0.1.0"

from hf_dpo.collator import DPODataCollator
from hf_dpo.config import DPOTrainingArguments
from hf_dpo.trainer import DPOTrainer

__all__ = ["DPODataCollator", "DPOTrainer", "DPOTrainingArguments", "__version__"]
