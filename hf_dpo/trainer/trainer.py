"""DPOTrainer: Direct Preference Optimization as a `transformers.Trainer` subclass.

The trainer only wires things together: data preparation (:mod:`hf_dpo.data`), the batch layout
(:mod:`hf_dpo.batch`), the reference (:mod:`hf_dpo.reference`), and the step (:meth:`DPOTrainer._step`: the batch,
the policy's forward, the reference, the loss of :mod:`hf_dpo.trainer.step`). Each step runs the policy once over
the batch, each prompt read once per pair where the model allows it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, Trainer, set_seed
from transformers.trainer_utils import EvalLoopOutput

from hf_dpo.batch import ScoredBatch, SharedPromptCollator, default_collator
from hf_dpo.batch.attention import attention_support, reading_shared_prompt
from hf_dpo.batch.vision import layout_collator
from hf_dpo.config import DPOTrainingArguments
from hf_dpo.data import (
    ALL_REF_COLUMNS,
    LABEL_COLUMN,
    DataStatsCallback,
    holds_lists,
)
from hf_dpo.data.vision import text_tokenizer
from hf_dpo.logprobs import sequence_scores
from hf_dpo.losses import LossSettings, RewardMean
from hf_dpo.models import (
    disable_dropout,
    is_peft_model,
    keep_4bit_layers_trainable,
    model_and_tokenizer,
    offloading_activations,
    router_aux_loss_coef,
    saving_only_adapter,
    wrap_peft,
)
from hf_dpo.models.upstream_noise import PEFT_OFFLINE_BASE_CONFIG, silenced
from hf_dpo.monitor import add_tool_callbacks
from hf_dpo.publish import CheckpointPushWatch, push_run, write_model_card
from hf_dpo.reference import (
    Reference,
    build_reference,
)
from hf_dpo.trainer.callbacks import ReferenceSyncCallback, RewardMeanCallback
from hf_dpo.trainer.checkpoints import reporting_full_disk_of, resume_point
from hf_dpo.trainer.datasets_setup import PreferenceDatasets
from hf_dpo.trainer.guards import (
    NonFiniteError,
    NonFiniteGradientGuard,
    SkippedBatch,
    all_finite,
    nonfinite_message,
    refuse_data_parallel,
)
from hf_dpo.trainer.interrupt import StopOnInterrupt, any_process, stopping_at_step_boundary
from hf_dpo.trainer.metrics import LISTS, PAIRED, UNPAIRED, MetricWindows, with_train_window
from hf_dpo.trainer.preparation import checked_args, image_processor
from hf_dpo.trainer.step import list_loss, pair_loss, unpaired_loss

logger = logging.getLogger(__name__)


class DPOTrainer(PreferenceDatasets, Trainer):
    """Trains a causal LM on (prompt, chosen, rejected) pairs with a preference loss, or, with ``loss_type="kto"``,
    on (prompt, completion, label) rows.

    Args:
        model: a `PreTrainedModel`, a `PeftModel`, or a name/path loaded with `args.model_init_kwargs`.
        ref_model: the reference model (instance or name/path, loaded like `model`), frozen. Default: see
            `hf_dpo.reference.build_reference` (adapters disabled or the starting adapter for a PEFT model, else a
            frozen copy of `model`; nothing for reference-free losses).
        args: `DPOTrainingArguments`.
        train_dataset, eval_dataset: rows with `prompt`/`chosen`/`rejected` (strings or chat messages), or rows
            already tokenized into `prompt_input_ids`/`chosen_input_ids`/`rejected_input_ids`; or several answers
            per prompt, `prompt`/`completions` with `scores` or `ranking` (see `hf_dpo.data.lists`).
        processing_class: the tokenizer, or a vision-language model's processor (rows may then hold images: TRL's
            `images`/`image` columns); loaded from `model`'s name when omitted.
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
        args = checked_args(model, args)
        # Trainer seeds in its own __init__, after the adapters below are created: seed now so their random
        # initialisation, and so the whole run, repeats exactly.
        set_seed(args.seed)
        model, processing_class = model_and_tokenizer(model, processing_class, args)
        came_as_peft = is_peft_model(model)
        checkpointing = getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing  # <5.2x name
        model = wrap_peft(model, peft_config, checkpointing)
        self.reference: Reference = build_reference(model, ref_model, args, came_as_peft)
        for module in filter(None, (model, self.reference.model)):
            keep_4bit_layers_trainable(module)  # before any eval-mode forward (see hf_dpo/models/quantization.py)
            if args.disable_dropout:
                disable_dropout(module)
        self.loss_settings = LossSettings.from_args(args, router_aux_loss_coef=router_aux_loss_coef(model, args))
        self._router_outputs = {"output_router_logits": True} if self.loss_settings.router_aux_loss_coef else {}
        self._unpaired = self.loss_settings.unpaired  # KTO: rows of one completion and a label
        self._with_kl = self.loss_settings.kl_estimate  # apo_zero_unpaired needs no KL estimate

        self.dataset_stats: dict[str, dict[str, Any]] = {}
        train_dataset, eval_dataset = self._prepare_datasets(
            model, train_dataset, eval_dataset, processing_class, args
        )
        self._lists = self.loss_settings.lists or holds_lists(train_dataset, eval_dataset)  # pairs: lists of 2
        if data_collator is None:
            data_collator = self._default_collator(model, processing_class, train_dataset, eval_dataset, args)

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        refuse_data_parallel(self)
        self.model_accepts_loss_kwargs = False  # our loss never takes num_items_in_batch
        self._reads_shared_prompt = (
            isinstance(layout_collator(data_collator), SharedPromptCollator) and attention_support(model) is None
        )
        self._windows = MetricWindows(
            UNPAIRED if self._unpaired else LISTS if self._lists else PAIRED,
            aux_loss=bool(self.loss_settings.router_aux_loss_coef),
        )
        # bco_pair's running δ over every process's rewards, when asked for (TRL's δ is 0)
        self.reward_mean = RewardMean(self._sum_over_processes) if args.bco_pair_running_mean else None
        self._skipped: dict[str, int] = {}  # batches left out by skip_nonfinite_batches
        self._saving_checkpoint = False
        self._add_own_callbacks()
        self.reference.prepare(self.accelerator)
        if args.precompute_ref_log_probs and self.reference.runs_model:
            self._precompute_reference()

    def _default_collator(
        self, model: Any, processing_class: Any, train_dataset: Any, eval_dataset: Any, args: DPOTrainingArguments
    ) -> Any:
        """The collator for the run's layout (shared prompt or padded rows; pairs, lists or unpaired rows; images
        processed per pair)."""
        layout = (args, self._unpaired, self._with_kl, bool(self.loss_settings.router_aux_loss_coef))
        pad_token_id = text_tokenizer(processing_class).pad_token_id
        images = image_processor(processing_class, train_dataset, eval_dataset)  # rows with images: processed
        data_collator = default_collator(
            [model, self.reference.model], pad_token_id, *layout, processor=images, lists=self._lists
        )
        checkpointing = getattr(args, "activation_checkpointing_kwargs", None) or args.gradient_checkpointing_kwargs
        if (
            images is not None
            and args.ddp_find_unused_parameters is None
            and not (checkpointing or {}).get("use_reentrant")
        ):  # as TRL: a batch without images leaves the vision tower without gradients under DDP
            args.ddp_find_unused_parameters = True
        return data_collator

    def _add_own_callbacks(self) -> None:
        """Callbacks that carry hf_dpo's state into checkpoints and logs, and the tools asked for."""
        self.add_callback(DataStatsCallback(self.dataset_stats))
        if self.reward_mean is not None:
            self.add_callback(RewardMeanCallback(self.reward_mean))
        self.add_callback(NonFiniteGradientGuard(self.accelerator, self._skipped))
        if self.args.sync_ref_model:
            self.add_callback(ReferenceSyncCallback(lambda: self.reference, self.accelerator))
        add_tool_callbacks(self)  # the doctor, and samples at each evaluation when asked
        self._interrupt = StopOnInterrupt(any_process(self.accelerator))  # Ctrl-C stops at a step boundary
        self.add_callback(self._interrupt)
        if self.args.push_to_hub:
            self.add_callback(CheckpointPushWatch(self))  # Trainer never looks at its background pushes' outcome

    @property
    def ref_model(self) -> torch.nn.Module | None:
        """The separate frozen reference model, if the run has one (TRL's attribute)."""
        return self.reference.model

    @property
    def aux_loss_enabled(self) -> bool:
        """Whether a mixture-of-experts router's load-balancing loss is trained (TRL's attribute)."""
        return bool(self.loss_settings.router_aux_loss_coef)

    # ---- the loss -----------------------------------------------------------------------------------------------

    def _step(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """What training and evaluation both run on a batch: per-row losses and metric values."""
        batch = ScoredBatch.from_collated(inputs, ld_alpha=self.args.ld_alpha)  # built once, read by every pass
        policy, outputs = sequence_scores(model, batch, hidden_states=self.args.fused_lm_head, **self._router_outputs)
        # accelerate autocasts the policy's forward; the reference must score at the same precision, or policy ==
        # reference no longer gives log 2 at step 0
        with self.accelerator.autocast():
            ref_logps = self.reference(model, batch)
        aux_loss = outputs.aux_loss if self._router_outputs else None
        if self._unpaired:
            return unpaired_loss(
                policy, ref_logps, batch, self.loss_settings, aux_loss=aux_loss, reduce=self._sum_over_processes
            )
        reward_mean = self.reward_mean  # evaluation reads the training statistics, never moves them
        if reward_mean is not None and not model.training:
            reward_mean = reward_mean.frozen()
        loss = list_loss if self._lists else pair_loss
        return loss(policy, ref_logps, batch, self.loss_settings, aux_loss=aux_loss, reward_mean=reward_mean)

    def _sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, reduction="sum") if self.accelerator.num_processes > 1 else tensor

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses, metrics = self._step(model, inputs)
        if model.training and not all_finite([losses], self.accelerator):  # before backward touches the grads
            if not self.args.skip_nonfinite_batches:
                raise NonFiniteError(nonfinite_message("loss", self.state.global_step + 1, self.args))
            raise SkippedBatch
        self._windows.add("train" if model.training else "eval", metrics)
        loss = losses.mean()
        return (loss, metrics) if return_outputs else loss

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        # the shared-prompt attention stays selected through backward, where checkpointing recomputes the layers
        reading = reading_shared_prompt(model) if self._reads_shared_prompt else contextlib.nullcontext()
        try:
            with reading:
                return super().training_step(model, inputs, num_items_in_batch)
        except SkippedBatch:  # no backward: this batch adds nothing to the gradients
            self._skipped["skipped_batches"] = self._skipped.get("skipped_batches", 0) + 1
            return torch.zeros((), device=self.args.device)

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        # Under DeepSpeed, Trainer casts every floating input to the engine's dtype: summed log-probs of -50..-750
        # would lose up to 2 nats in bf16. Reference log-probs go to the device in float32, around that cast.
        reference_columns = {name: inputs.pop(name) for name in ALL_REF_COLUMNS if name in inputs}
        inputs = super()._prepare_inputs(inputs)
        for name, value in reference_columns.items():
            inputs[name] = value.to(self.args.device, torch.float32)
        return inputs

    def compute_loss_context_manager(self) -> Any:
        context = super().compute_loss_context_manager()
        offload = self.args.activation_offloading and self.model.training
        return offloading_activations(context) if offload else context

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            losses, metrics = self._step(model, inputs)
        self._windows.add("eval", metrics, gather=self.accelerator.gather_for_metrics)
        loss = losses.mean().detach()
        if prediction_loss_only:
            return loss, None, None
        # "Predictions" for compute_metrics: the implicit rewards of each pair, [B, 2], with label 0 (the chosen
        # completion, column 0, should win).
        if self._unpaired:  # each row's implicit reward, and its label (1: desirable)
            rewards = metrics["chosen_rewards_sum"] + metrics["rejected_rewards_sum"]
            return loss, rewards, inputs[LABEL_COLUMN].long()
        rewards = torch.stack([metrics["rewards/chosen"], metrics["rewards/rejected"]], dim=1)
        return loss, rewards, torch.zeros(rewards.shape[0], dtype=torch.long, device=rewards.device)

    # ---- metrics ------------------------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        self._windows.clear("train")  # nothing left over from an earlier run
        resume_from_checkpoint = resume_point(resume_from_checkpoint, self.args)  # True: the last *complete* one
        with stopping_at_step_boundary(self._interrupt, self.args):
            return super().train(resume_from_checkpoint, *args, **kwargs)

    def evaluate(self, eval_dataset: Any = None, *args: Any, **kwargs: Any) -> dict[str, float]:
        # A dict of named sets goes to Trainer, which calls this method again for each one.
        if eval_dataset is not None and not isinstance(eval_dataset, str | dict):
            eval_dataset = self._prepare_late(eval_dataset, "eval")
        return super().evaluate(eval_dataset, *args, **kwargs)

    def predict(self, test_dataset: Any, *args: Any, **kwargs: Any) -> Any:
        return super().predict(self._prepare_late(test_dataset, "test"), *args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # A training log, or the run's closing summary (train_loss): as TRL does, the summary carries the metrics of
        # the steps since the last log, so a run shorter than logging_steps still logs them. Evaluation metrics are
        # added in evaluation_loop.
        if "loss" in logs or "train_loss" in logs:
            means = self._windows.read("train", reduce=self._sum_over_processes, device=self.args.device)
            skipped = self._skipped.get("skipped_batches", 0) if self.args.skip_nonfinite_batches else None
            with_train_window(logs, means, skipped)
        super().log(logs, start_time)

    def evaluation_loop(
        self,
        dataloader: Any,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        self._windows.clear("eval")
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        # Every metric, the loss included, is the exact mean over the real pairs: the Trainer's own eval_loss
        # weights each batch mean by the batch's 2B rows, which the trimming of repeated samples miscounts.
        metrics = self._windows.read("eval")
        for name, value in metrics.items():
            output.metrics[f"{metric_key_prefix}_{name}"] = value
        return output

    # ---- saving -------------------------------------------------------------------------------------------------

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        self._saving_checkpoint = True  # a checkpoint keeps every adapter: resuming needs the reference's too
        try:
            with reporting_full_disk_of(self, trial):  # a full disk: one clear error, no half-written folder
                super()._save_checkpoint(model, trial)
        finally:
            self._saving_checkpoint = False

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        """What a run saves and pushes is the trained adapter alone, at the root of the folder."""
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        only_adapter = not self._saving_checkpoint and is_peft_model(model) and list(model.peft_config) != ["default"]
        # peft looks the base model's config up on the Hub when it saves; offline it warns for nothing
        with (
            silenced(PEFT_OFFLINE_BASE_CONFIG),
            saving_only_adapter(model, model.active_adapter) if only_adapter else contextlib.nullcontext(),
        ):
            return super()._save(output_dir, state_dict)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        merge_adapter: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Trainer's push of what the run saved (for LoRA, the trained adapter alone); ``merge_adapter=True``
        pushes the adapter merged into its base model instead, loadable with plain ``AutoModelForCausalLM``."""
        # a failure says what reached the Hub and where the model is on disk (huggingface_hub did the retrying)
        return push_run(self, merge_adapter, commit_message, blocking, token, revision, private, **kwargs)

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
