"""DPOTrainer and what runs inside it: the step, metric windows, guards against bad numbers, its callbacks."""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "DPOTrainer": "hf_dpo.trainer.trainer",
        "KTOTrainer": "hf_dpo.trainer.kto",
    },
)
