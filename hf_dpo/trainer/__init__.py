"""DPOTrainer and what runs inside it: the step, metric windows, guards against bad numbers, its callbacks."""

from hf_dpo.trainer.trainer import DPOTrainer

__all__ = ["DPOTrainer"]
