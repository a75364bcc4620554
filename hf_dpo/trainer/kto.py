"""KTOTrainer: TRL's ``KTOTrainer`` for hf_dpo, so a script written for TRL swaps two names::

    from hf_dpo import KTOConfig, KTOTrainer   # was: from trl import KTOConfig, KTOTrainer
    trainer = KTOTrainer(model=model, args=KTOConfig(output_dir="out"), train_dataset=rows, processing_class=tokenizer)

It is `DPOTrainer` on an unpaired loss (``kto`` or ``apo_zero_unpaired``: rows of a prompt, one completion and a
``label``, or pairs unrolled into a desirable and an undesirable row) with TRL 1.16's KTO conventions:

- :class:`~hf_dpo.config.kto_arguments.KTOConfig` defaults (``args=None`` gives ``KTOConfig("<model>-KTO")``);
- in TRL's sequential order, each row's KL completion is TRL's: the completions rotated by one within consecutive
  blocks of ``per_device_train_batch_size`` rows, ``(x₁, yₙ), (x₂, y₁), ..., (xₙ, yₙ₋₁)``, so a batch estimates
  ``KL(π‖π_ref)`` from its own completions paired with other prompts; a batch of one row would pair a row with
  itself, and is refused as TRL refuses it. In a shuffled order (``train_sampling_strategy="random"``) each row
  takes the completion of the next row with another prompt (``DPOTrainer(loss_type="kto")``'s pairing).
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from hf_dpo.config.kto_arguments import KTOConfig
from hf_dpo.data.columns import KL_COMPLETION_COLUMN
from hf_dpo.losses import UNPAIRED_LOSS_TYPES, as_loss_types
from hf_dpo.models.policy import model_id
from hf_dpo.trainer.trainer import DPOTrainer


def rotated_kl_completions(dataset: Dataset, block: int) -> Dataset:
    """``dataset`` with TRL's KL completions: within each block of ``block`` consecutive rows, row ``i`` takes the
    completion of row ``i - 1`` and the first row the last one's.

    >>> rows = Dataset.from_dict({"completion_input_ids": [[1], [2], [3], [4], [5]]})
    >>> list(rotated_kl_completions(rows, 2)["kl_completion_input_ids"])
    [[2], [1], [4], [3], [5]]
    """

    def rotate(rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
        completions = rows["completion_input_ids"]
        return {KL_COMPLETION_COLUMN: [completions[-1], *completions[:-1]]}

    return dataset.map(rotate, batched=True, batch_size=block, desc="KL completions (TRL's rotation)")


class KTOTrainer(DPOTrainer):
    """Trains a causal LM with KTO on unpaired rows (see the module docstring); the arguments are `DPOTrainer`'s,
    with `KTOConfig` as ``args``."""

    def __init__(self, model: Any = None, ref_model: Any = None, args: Any = None, *more: Any, **kwargs: Any):
        if args is None:
            short_name = model_id(model).replace(":", "/").split("/")[-1]
            args = KTOConfig(output_dir=f"{short_name or 'model'}-KTO")  # TRL's default folder
        loss_types = as_loss_types(args.loss_type)
        if len(loss_types) != 1 or loss_types[0] not in UNPAIRED_LOSS_TYPES:
            raise ValueError(
                f"KTOTrainer trains an unpaired loss ({', '.join(UNPAIRED_LOSS_TYPES)}), not loss_type="
                f"{args.loss_type!r}; use DPOTrainer for paired losses"
            )
        if self._rotates(args) and args.per_device_train_batch_size <= 1:
            raise ValueError(
                f"KTOTrainer with loss_type={loss_types[0]!r} and sequential sampling takes each row's KL completion "
                "from its batch neighbours: per_device_train_batch_size must be > 1 (a batch of one row would pair "
                "a row with its own completion, making the KL estimate its reward), or set "
                "train_sampling_strategy='random'"
            )
        super().__init__(model, ref_model, args, *more, **kwargs)

    @staticmethod
    def _rotates(args: Any) -> bool:
        """Whether rows take TRL's rotated KL completions: a loss with a KL estimate, in TRL's sequential order."""
        return as_loss_types(args.loss_type) == ["kto"] and args.train_sampling_strategy == "sequential"

    def _prepare(self, dataset: Any, split: str, tokenizer: Any = None, args: Any = None) -> Any:
        prepared = super()._prepare(dataset, split, tokenizer, args)
        args = args or self.args
        if self._rotates(args) and isinstance(prepared, Dataset) and KL_COMPLETION_COLUMN not in prepared.column_names:
            # every split, in blocks of the training batch size, as TRL prepares them
            prepared = rotated_kl_completions(prepared, args.per_device_train_batch_size)
        return prepared
