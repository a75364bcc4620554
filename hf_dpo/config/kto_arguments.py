"""KTOConfig: TRL's ``KTOConfig`` for hf_dpo, so a script written for TRL's ``KTOTrainer`` swaps two names::

    from hf_dpo import KTOConfig, KTOTrainer   # was: from trl import KTOConfig, KTOTrainer

It is `DPOTrainingArguments` (every field, documented there) with TRL 1.16's KTO defaults: ``loss_type="kto"``,
``desirable_weight=1.0``, ``undesirable_weight=1.0``, ``beta=0.1``, ``learning_rate=1e-6``, ``max_length=1024``, and
TRL's sampling order, ``train_sampling_strategy="sequential"`` (TRL's KTOTrainer takes each row's KL completion from its
neighbours in a fixed-order batch; see :mod:`hf_dpo.trainer.kto`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_dpo.config.training_arguments import DPOTrainingArguments
from hf_dpo.losses import UNPAIRED_LOSS_TYPES, as_loss_types


@dataclass
class KTOConfig(DPOTrainingArguments):
    """`DPOTrainingArguments` with TRL 1.16's ``KTOConfig`` defaults (see the module docstring)."""

    loss_type: str = field(
        default="kto",
        metadata={
            "help": f"The unpaired loss, one of: {', '.join(UNPAIRED_LOSS_TYPES)}. kto (TRL's default) compares each "
            "completion's implied reward with a batch estimate of KL(policy || reference); apo_zero_unpaired needs "
            "no estimate."
        },
    )
    train_sampling_strategy: str = field(
        default="sequential",
        metadata={
            "help": "Order of the training rows. 'sequential' (TRL's KTO default): each row's KL completion is its "
            "batch neighbour's, as TRL pairs them. 'random' (or 'group_by_length'): rows are shuffled and each takes "
            "the completion of the next row with another prompt."
        },
    )

    def __post_init__(self) -> None:
        loss_types = as_loss_types(self.loss_type)
        if len(loss_types) != 1 or loss_types[0] not in UNPAIRED_LOSS_TYPES:
            raise ValueError(
                f"Invalid KTOConfig: loss_type={self.loss_type!r} must be one of {', '.join(UNPAIRED_LOSS_TYPES)} (a "
                "paired loss trains on chosen/rejected pairs: use DPOTrainingArguments and DPOTrainer)"
            )
        super().__post_init__()
