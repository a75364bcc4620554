"""DPOTrainer and what runs inside it: the step, metric windows, guards against bad numbers, its callbacks; the
checkpoints a run can trust (:mod:`~hf_dpo.trainer.checkpoints`) and Ctrl-C at a step boundary
(:mod:`~hf_dpo.trainer.interrupt`)."""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "CheckpointSpaceError": "hf_dpo.trainer.checkpoints",
        "DPOTrainer": "hf_dpo.trainer.trainer",
        "KTOTrainer": "hf_dpo.trainer.kto",
        "TrainingInterrupted": "hf_dpo.trainer.interrupt",
    },
)
