"""DPOTrainer: Direct Preference Optimization as a `transformers.Trainer` subclass.

The trainer only wires things together: data preparation (`data.py`), batching (`collator.py`), log-probs
(`logprobs.py`), the reference (`reference.py`) and the loss (`losses.py`). Each step runs the policy once on the
``[2B, T]`` batch of chosen and rejected sequences.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import torch
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from transformers import PreTrainedModel, Trainer, set_seed
from transformers.trainer_utils import EvalLoopOutput

from hf_dpo import ref_cache
from hf_dpo.collator import DPODataCollator
from hf_dpo.columns import ID_COLUMNS, REF_COLUMNS
from hf_dpo.config import DPOTrainingArguments
from hf_dpo.data import DataStatsCallback, check_vocabulary, prepare_dataset
from hf_dpo.loading import load_causal_lm, load_tokenizer
from hf_dpo.logprobs import sequence_logps
from hf_dpo.losses import dpo_loss, needs_reference
from hf_dpo.model_card import write_model_card
from hf_dpo.model_utils import disable_dropout, is_peft_model, is_quantized
from hf_dpo.reference import (
    AdapterReference,
    DisabledAdapterReference,
    FrozenModelReference,
    NoReference,
    PrecomputedReference,
    add_reference_adapter,
    precompute_columns,
)

logger = logging.getLogger(__name__)


METRIC_NAMES = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logps/ref_margin",
    "kl",
)


class DPOTrainer(Trainer):
    """Trains a causal LM on (prompt, chosen, rejected) pairs with a preference loss.

    Args:
        model: a `PreTrainedModel`, a `PeftModel`, or a name/path loaded with `args.model_init_kwargs`.
        ref_model: the reference model (instance or name/path), frozen. Default: the PEFT model with adapters
            disabled if `model` is (or becomes) a PEFT model, else a frozen copy of `model`. Ignored (and never
            built) when `args.reference_free`.
        args: `DPOTrainingArguments`.
        train_dataset, eval_dataset: rows with `prompt`/`chosen`/`rejected` (strings or chat messages), or rows
            already tokenized into `prompt_input_ids`/`chosen_input_ids`/`rejected_input_ids`.
        processing_class: the tokenizer; loaded from `model`'s name when omitted.
        peft_config: a `peft.PeftConfig`; the model is wrapped with `get_peft_model`.
        Other arguments are `transformers.Trainer`'s.
    """

    # compute_loss returns a per-micro-batch mean; the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel | torch.nn.Module | str | None = None,
        ref_model: PreTrainedModel | torch.nn.Module | str | None = None,
        args: DPOTrainingArguments | None = None,
        data_collator: Any = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | IterableDataset | dict[str, Dataset] | None = None,
        processing_class: Any = None,
        peft_config: Any = None,
        **kwargs: Any,
    ):
        if model is None:
            raise ValueError("DPOTrainer needs a model (an instance or a name/path)")
        model_id = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", "")
        if args is None:
            args = DPOTrainingArguments(output_dir=f"{str(model_id).split('/')[-1] or 'model'}-dpo")
        elif not isinstance(args, DPOTrainingArguments):
            raise TypeError(f"args must be DPOTrainingArguments, got {type(args).__name__}")
        init_kwargs = args.model_init_kwargs or {}
        # Trainer seeds in its own __init__, after the adapters below are created: seed now so their random
        # initialisation, and so the whole run, repeats exactly.
        set_seed(args.seed)
        if isinstance(model, str):
            model = load_causal_lm(model, **init_kwargs)
        if processing_class is None:
            if not model_id:
                raise ValueError(
                    "pass processing_class (the tokenizer): the model has no name or path to load one from"
                )
            processing_class = load_tokenizer(model_id)
        if getattr(processing_class, "pad_token", None) is None:
            processing_class.pad_token = processing_class.eos_token
            logger.warning("the tokenizer has no pad token; using its EOS token %r", processing_class.eos_token)

        came_as_peft = is_peft_model(model)
        model = self._wrap_peft(model, peft_config)
        checkpointing = getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing  # <5.2x name
        if checkpointing and is_peft_model(model):
            # LoRA leaves the embeddings frozen; checkpointed blocks still need an input that requires grad.
            model.enable_input_require_grads()
        self.reference = self._build_reference(model, ref_model, args, init_kwargs, came_as_peft)
        if args.disable_dropout:
            disable_dropout(model)
            if isinstance(self.reference, FrozenModelReference):
                disable_dropout(self.reference.model)

        self.dataset_stats: dict[str, dict[str, Any]] = {}
        with args.main_process_first(desc="tokenizing preference data"):
            train_dataset = self._prepare(train_dataset, processing_class, args, "train")
            if isinstance(eval_dataset, dict) and not isinstance(eval_dataset, DatasetDict | IterableDatasetDict):
                eval_dataset = {
                    name: self._prepare(split, processing_class, args, f"eval_{name}")
                    for name, split in eval_dataset.items()
                }
            else:
                eval_dataset = self._prepare(eval_dataset, processing_class, args, "eval")
        check_vocabulary(model, processing_class, train_dataset)
        if data_collator is None:
            data_collator = DPODataCollator(processing_class.pad_token_id, args.pad_to_multiple_of)

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        self.model_accepts_loss_kwargs = False  # our loss never takes num_items_in_batch
        self.add_callback(DataStatsCallback(self.dataset_stats))
        self._metric_windows: dict[str, torch.Tensor] = {}  # mode -> [sum of each metric..., number of pairs]
        self._loss_state: dict[str, Any] = {}  # running statistics some losses keep across steps (bco_pair)
        if isinstance(self.reference, FrozenModelReference):
            self._place_reference_model()
        if args.precompute_ref_log_probs and not isinstance(self.reference, NoReference):
            self._precompute_reference()

    # ---- set-up -------------------------------------------------------------------------------------------------

    @staticmethod
    def _wrap_peft(model: torch.nn.Module, peft_config: Any) -> torch.nn.Module:
        quantized = is_quantized(model)
        if peft_config is None:
            if quantized and not is_peft_model(model):
                raise ValueError("a 4-bit or 8-bit model cannot be trained itself; pass a peft_config (QLoRA)")
            return model
        if is_peft_model(model):
            raise ValueError(
                "model is already a PeftModel and a peft_config was also given; pass one or the other "
                "(to add an adapter to a PeftModel, merge it first with model.merge_and_unload())"
            )
        from peft import get_peft_model, prepare_model_for_kbit_training

        if quantized:
            # fp32 norms and an input that requires grad; checkpointing is left to the Trainer's own argument
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return get_peft_model(model, peft_config)

    @staticmethod
    def _build_reference(
        model: torch.nn.Module,
        ref_model: Any,
        args: DPOTrainingArguments,
        init_kwargs: dict[str, Any],
        came_as_peft: bool,
    ) -> NoReference | FrozenModelReference | DisabledAdapterReference | AdapterReference:
        if args.reference_free or not needs_reference(args.loss_type):
            return NoReference()
        if ref_model is not None:
            if ref_model is model:
                raise ValueError("ref_model is the policy model itself; pass a separate copy or leave it None")
            if isinstance(ref_model, str):
                ref_model = load_causal_lm(ref_model, **init_kwargs)
            return FrozenModelReference(ref_model)
        if is_peft_model(model):
            if came_as_peft or args.ref_adapter_name:
                # The PeftModel's adapter (an SFT LoRA, say) is what training starts from: it is the reference.
                train_adapter = args.model_adapter_name or model.active_adapter
                return add_reference_adapter(model, train_adapter, args.ref_adapter_name)
            return DisabledAdapterReference()
        return FrozenModelReference(copy.deepcopy(model))

    def _place_reference_model(self) -> None:
        """Put the frozen reference on this process's device, unwrapped: it never gets gradients, so DDP has
        nothing to synchronise; it runs under the same autocast as the policy (see `_reference_logps`)."""
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise ValueError(
                "a separate frozen reference model is not supported with FSDP or DeepSpeed yet (each process would "
                "hold an unsharded copy); train a PEFT model (its reference is the base model with the adapters "
                "disabled) or use reference_free=True"
            )
        if not is_quantized(self.reference.model):
            self.reference.model.to(self.args.device)

    def _reference_logps(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        # The policy's forward is autocast by accelerate; the reference must score under the same precision, or
        # policy == reference no longer gives log 2 at step 0.
        with self.accelerator.autocast():
            return self.reference(model, inputs)

    def _prepare(self, dataset: Any, tokenizer: Any, args: DPOTrainingArguments, split: str) -> Any:
        if dataset is None:
            return None
        prepared, stats = prepare_dataset(dataset, tokenizer, args, split)
        if stats is not None:
            self.dataset_stats[split] = stats.to_dict()
        return prepared

    def _precompute_reference(self) -> None:
        """Reference log-probs as dataset columns (from the disk cache when it has them), then drop the
        reference model: training holds one model and runs one forward per step."""
        if not is_quantized(self.model):  # bitsandbytes models were placed when loaded and refuse .to()
            self.model.to(self.args.device)  # the pass may run before Trainer has placed the policy
        self.train_dataset = self._with_reference_logps(self.train_dataset, "train")
        if isinstance(self.eval_dataset, dict):
            self.eval_dataset = {
                name: self._with_reference_logps(d, f"eval_{name}") for name, d in self.eval_dataset.items()
            }
        else:
            self.eval_dataset = self._with_reference_logps(self.eval_dataset, "eval")
        self.reference = PrecomputedReference()  # a frozen copy, if there was one, is released here

    def _with_reference_logps(self, dataset: Any, split: str) -> Any:
        args = self.args
        return precompute_columns(
            dataset,
            split,
            reference=self._reference_logps,
            policy=self.model,
            collator=self.data_collator,
            batch_size=args.precompute_ref_batch_size or args.per_device_eval_batch_size,
            accelerator=self.accelerator,
            cache_dir=(args.ref_logps_cache_dir or ref_cache.default_cache_dir()) if args.ref_logps_cache else None,
            fingerprint=self.reference.fingerprint,
        )

    def _prepare_late(self, dataset: Any, split: str) -> Any:
        """A dataset handed to evaluate()/predict(): tokenized, and given reference columns when precomputed."""
        dataset = self._prepare(dataset, self.processing_class, self.args, split)
        if isinstance(self.reference, PrecomputedReference) and not set(REF_COLUMNS) <= set(dataset.column_names):
            raise ValueError(
                f"the {split} dataset has no reference log-probs, and the reference model was released after "
                "precomputing; pass it to DPOTrainer(eval_dataset=...) so they are computed with the others"
            )
        return dataset

    def _set_signature_columns_if_needed(self) -> None:
        # The model's forward takes none of our columns; keep them even with remove_unused_columns=True.
        if self._signature_columns is None:
            self._signature_columns = [*ID_COLUMNS, *REF_COLUMNS]

    # ---- the loss -----------------------------------------------------------------------------------------------

    def _dpo_forward(
        self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-pair losses `[B]` and per-pair metric values `{name: [B]}` for one batch."""
        logps, num_tokens = sequence_logps(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        chosen_logps, rejected_logps = logps.chunk(2)  # the collator stacks [chosen; rejected]
        chosen_lengths, rejected_lengths = num_tokens.chunk(2)
        ref_chosen_logps, ref_rejected_logps = self._reference_logps(model, inputs)
        args = self.args
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            chosen_logps,
            rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            beta=args.beta,
            loss_type=args.loss_type,
            label_smoothing=args.label_smoothing,
            loss_weights=args.loss_weights,
            rpo_alpha=args.rpo_alpha,
            simpo_gamma=args.simpo_gamma,
            orpo_lambda=args.orpo_lambda,
            discopop_tau=args.discopop_tau,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
            state=self._loss_state,
            update_state=model.training,  # evaluation reads the training statistics, never moves them
        )
        with torch.no_grad():
            metrics = {
                "rewards/chosen": chosen_rewards,
                "rewards/rejected": rejected_rewards,
                "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
                "rewards/margins": chosen_rewards - rejected_rewards,
                "logps/chosen": chosen_logps.detach(),
                "logps/rejected": rejected_logps.detach(),
                "logps/ref_margin": ref_chosen_logps - ref_rejected_logps,
                # mean of log π - log π_ref over both completions: a per-sequence estimate of the drift
                "kl": 0.5 * ((chosen_logps - ref_chosen_logps) + (rejected_logps - ref_rejected_logps)).detach(),
            }
        return losses, metrics

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses, metrics = self._dpo_forward(model, inputs)
        self._accumulate_metrics(metrics, "train" if model.training else "eval")
        loss = losses.mean()
        return (loss, metrics) if return_outputs else loss

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            losses, metrics = self._dpo_forward(model, inputs)
        self._accumulate_metrics(metrics, "eval")
        loss = losses.mean().detach()
        if prediction_loss_only:
            return loss, None, None
        # "Predictions" for compute_metrics: the implicit rewards of each pair, [B, 2]; the label is always 0
        # (the chosen completion, column 0, should win).
        rewards = torch.stack([metrics["rewards/chosen"], metrics["rewards/rejected"]], dim=1)
        return loss, rewards, torch.zeros(rewards.shape[0], dtype=torch.long, device=rewards.device)

    # ---- metrics ------------------------------------------------------------------------------------------------

    def _accumulate_metrics(self, metrics: dict[str, torch.Tensor], mode: str) -> None:
        """Add this batch's per-pair values to the window: local in training (reduced at log time), gathered
        at once in evaluation, where accelerate drops the samples it repeated to even out the last batch."""
        values = torch.stack([metrics[name].detach().float() for name in METRIC_NAMES], dim=1)  # [B, K]
        if mode == "eval":
            values = self.accelerator.gather_for_metrics(values)
        totals = torch.cat([values.sum(0), values.new_tensor([values.shape[0]])])
        window = self._metric_windows.get(mode)
        self._metric_windows[mode] = totals if window is None else window + totals

    def _reduce_metrics(self, mode: str) -> dict[str, float]:
        """Means over every pair seen since the last call (all processes); clears the window."""
        totals = self._metric_windows.pop(mode, None)
        if mode == "train":  # every process logs at the same step, so every process joins this collective
            if totals is None:
                totals = torch.zeros(len(METRIC_NAMES) + 1, device=self.args.device)
            totals = self.accelerator.reduce(totals, reduction="sum")
        if totals is None or totals[-1].item() == 0:
            return {}
        means = (totals[:-1] / totals[-1]).tolist()
        return dict(zip(METRIC_NAMES, means))

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._metric_windows.pop("train", None)  # nothing left over from an earlier run
        return super().train(*args, **kwargs)

    def evaluate(self, eval_dataset: Any = None, *args: Any, **kwargs: Any) -> dict[str, float]:
        if eval_dataset is not None and not isinstance(eval_dataset, str):
            eval_dataset = self._prepare_late(eval_dataset, "eval")
        return super().evaluate(eval_dataset, *args, **kwargs)

    def predict(self, test_dataset: Any, *args: Any, **kwargs: Any) -> Any:
        return super().predict(self._prepare_late(test_dataset, "test"), *args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log; evaluation metrics are added in evaluation_loop
            logs.update(self._reduce_metrics("train"))
        super().log(logs, start_time)

    def evaluation_loop(
        self,
        dataloader: Any,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        self._metric_windows.pop("eval", None)
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        for name, value in self._reduce_metrics("eval").items():
            output.metrics[f"{metric_key_prefix}_{name}"] = value
        return output

    # ---- model card ---------------------------------------------------------------------------------------------

    def create_model_card(self, model_name: str | None = None, **kwargs: Any) -> None:
        if not self.is_world_process_zero():
            return
        write_model_card(
            os.path.join(self.args.output_dir, "README.md"),
            trainer=self,
            model_name=model_name or os.path.basename(os.path.normpath(self.args.output_dir)),
            **kwargs,
        )
