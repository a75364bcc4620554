"""hf_dpo: Direct Preference Optimization as a drop-in `transformers.Trainer`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names are imported on first use, not with the package: `hf-dpo plot`, `hf-dpo train --help` and the
# command's error messages need no trainer, and importing it pulls in torch, transformers and peft.
_PUBLIC = {
    "DPODataCollator": "hf_dpo.batch.padded",
    "DPOTrainer": "hf_dpo.trainer.trainer",
    "DPOTrainingArguments": "hf_dpo.config.training_arguments",
    "KTOConfig": "hf_dpo.config.kto_arguments",  # TRL's KTO names: a KTOTrainer script swaps its import
    "KTOTrainer": "hf_dpo.trainer.kto",
}

if TYPE_CHECKING:
    from hf_dpo.batch.padded import DPODataCollator
    from hf_dpo.config.kto_arguments import KTOConfig
    from hf_dpo.config.training_arguments import DPOTrainingArguments
    from hf_dpo.trainer.kto import KTOTrainer
    from hf_dpo.trainer.trainer import DPOTrainer

__all__ = ["DPODataCollator", "DPOTrainer", "DPOTrainingArguments", "KTOConfig", "KTOTrainer", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'hf_dpo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
