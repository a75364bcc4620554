"""The datasets a DPOTrainer trains and evaluates on: tokenized (their counts kept for the card), KTO's KL
counterparts fixed, and the reference's log-probs added as columns when they are precomputed. A mixin of
:class:`~hf_dpo.trainer.DPOTrainer`, which it reads through ``self`` (its arguments, accelerator, reference, collator).
"""

from __future__ import annotations

from typing import Any

from hf_dpo.config import DPOTrainingArguments
from hf_dpo.data import (
    TRAINER_COLUMNS,
    check_vocabulary,
    holds_lists,
    prepare_dataset,
    reference_columns,
    warn_if_unbalanced,
    with_kl_completions,
    with_lengths,
)
from hf_dpo.data.vision import text_tokenizer
from hf_dpo.models import is_quantized
from hf_dpo.reference import (
    PrecomputedReference,
    Reference,
    engine_name,
    pass_settings,
    precompute_columns,
    precompute_model,
)
from hf_dpo.trainer.preparation import check_vision_run, per_eval_split


class PreferenceDatasets:
    """Dataset preparation and the reference pass over it."""

    def _prepare_datasets(
        self, model: Any, train_dataset: Any, eval_dataset: Any, tokenizer: Any, args: DPOTrainingArguments
    ) -> tuple[Any, Any]:
        """The training and evaluation sets tokenized (counted into ``dataset_stats``), with KTO's KL counterparts."""
        check_vision_run(model, tokenizer, train_dataset, "train")
        per_eval_split(eval_dataset, lambda dataset, split: check_vision_run(model, tokenizer, dataset, split))
        with args.main_process_first(desc="tokenizing preference data"):
            train_dataset = self._prepare(train_dataset, "train", tokenizer, args)
            eval_dataset = per_eval_split(eval_dataset, self._prepare, tokenizer, args)
        check_vocabulary(model, text_tokenizer(tokenizer), train_dataset)
        if self._with_kl:  # each row's mismatched completion, fixed so its reference log-probs can be cached
            train_dataset = with_kl_completions(train_dataset)
            eval_dataset = per_eval_split(eval_dataset, lambda dataset, split: with_kl_completions(dataset))
        if self._unpaired:
            warn_if_unbalanced(self.dataset_stats.get("train"), args)
        return train_dataset, eval_dataset

    def _prepare(self, dataset: Any, split: str, tokenizer: Any = None, args: Any = None) -> Any:
        if dataset is None:
            return None
        args = args or self.args
        prepared, stats = prepare_dataset(dataset, tokenizer or self.processing_class, args, split)
        if stats is not None:
            self.dataset_stats[split] = stats.to_dict()
        if args.train_sampling_strategy in ("group_by_length", "batch_rebalance"):  # the Trainer's samplers read it
            prepared = with_lengths(prepared, args.length_column_name)
        return prepared

    def _precompute_reference(self) -> None:
        """Reference log-probs as dataset columns (from the disk cache when it has them), then release what only
        the reference needed: training holds one model and runs one forward per step."""
        if not is_quantized(self.model) and engine_name(self.accelerator) != "deepspeed":  # DeepSpeed places it
            self.model.to(self.args.device)  # the pass runs before Trainer has placed the policy
        self._precompute_policy = precompute_model(self.model, self.accelerator)
        self.train_dataset = self._with_reference_logps(self.train_dataset, "train")
        self.eval_dataset = per_eval_split(self.eval_dataset, self._with_reference_logps)
        self.reference.release(self.model)
        columns = reference_columns(self._unpaired, self._with_kl, self._lists)
        self.reference = PrecomputedReference(released=self.reference, columns=columns)

    def _with_reference_logps(self, dataset: Any, split: str, reference: Reference | None = None) -> Any:
        reference = reference or self.reference
        return precompute_columns(
            dataset,
            split,
            reference=reference,
            policy=getattr(self, "_precompute_policy", None) or self.model,
            collator=self.data_collator,
            accelerator=self.accelerator,
            fingerprint=reference.fingerprint,
            columns=reference_columns(self._unpaired, self._with_kl, self._lists),
            autocast=self.accelerator.autocast,  # the precision the policy runs at
            **pass_settings(self.args, use_cache=reference is self.reference),
        )

    def _prepare_late(self, dataset: Any, split: str) -> Any:
        """A dataset handed to evaluate()/predict(): tokenized, with reference columns when the run reads them
        (computed by the reference if it can still run, or by the untrained policy, which equals it)."""
        check_vision_run(self.model, self.processing_class, dataset, split)
        dataset = self._prepare(dataset, split)
        if holds_lists(dataset) and not self._lists:  # a pair run's batches cannot hold them
            raise ValueError(
                f"the {split} dataset holds lists of answers; this run trains on pairs: give lists at init"
            )
        if set(self.reference.batch_columns) <= set(dataset.column_names or ()):
            return dataset
        source = self.reference.late_reference(trained=self.state.global_step > 0)
        if source is None:
            raise ValueError(
                f"the {split} dataset has no reference log-probs, and the reference was released after "
                "precomputing and training moved the policy; pass it to DPOTrainer(eval_dataset=...) so they are "
                "computed with the others"
            )
        return self._with_reference_logps(dataset, split, reference=source)

    def _set_signature_columns_if_needed(self) -> None:
        # The model's forward takes none of our columns; keep them even with remove_unused_columns=True.
        if self._signature_columns is None:
            self._signature_columns = [*TRAINER_COLUMNS, self.args.length_column_name]
