"""DPOTrainingArguments: the DPO knobs on top of transformers.TrainingArguments, each documented once.

Defaults that differ from `TrainingArguments`, and why:

- ``learning_rate=1e-6``: DPO moves a model that is already good; the paper and most full fine-tunes use 5e-7..1e-6.
  With LoRA, raise it (1e-5..5e-5 are common).
- ``logging_steps=10``: reward metrics are noisy per step and preference runs are short; 500 would log nothing.
- ``remove_unused_columns=False``: the raw ``prompt``/``chosen``/``rejected`` columns are not arguments of the
  model's ``forward``; the trainer tokenizes them itself and the collator ignores columns it does not need. (With
  ``True`` the trainer still keeps its own columns.)
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from hf_dpo.losses import LOSS_TYPES, as_loss_types, registered_loss_types

TRUNCATION_MODES = ("keep_end", "keep_start")


@dataclass
class DPOTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the fields of Direct Preference Optimization; see each field's ``help``."""

    # ---- the loss ----
    beta: float = field(
        default=0.1,
        metadata={
            "help": "β, the strength of the implicit KL penalty towards the reference model; must be > 0. Higher "
            "keeps the policy closer to the reference (0.1 in the DPO paper; 0.01-0.5 is the usual range)."
        },
    )
    loss_type: str = field(
        default="sigmoid",
        metadata={
            "help": f"The preference loss, one of: {', '.join(LOSS_TYPES)}. Several (a list, or comma-separated on "
            "the command line) are summed with `loss_weights`. simpo and orpo need no reference model."
        },
    )
    loss_weights: list[float] | None = field(
        default=None,
        metadata={"help": "One weight per entry of `loss_type` (default 1.0 each)."},
    )
    label_smoothing: float = field(
        default=0.0,
        metadata={
            "help": "ε in [0, 0.5): the assumed probability that a pair's preference label is wrong (conservative "
            "DPO for sigmoid, rDPO for robust; also the soft label of exo_pair, aot, aot_pair, simpo). 0 is plain DPO."
        },
    )
    rpo_alpha: float | None = field(
        default=None,
        metadata={
            "help": "RPO: add this times the chosen completion's per-token negative log-likelihood to the loss "
            "(1.0 in the RPO paper). None: off."
        },
    )
    simpo_gamma: float = field(
        default=0.5,
        metadata={"help": "SimPO's target reward margin γ (in reward units, like β·log-prob); usually 0.5-1.5."},
    )
    orpo_lambda: float = field(
        default=0.1,
        metadata={"help": "ORPO's weight λ ≥ 0 of the odds-ratio term next to the chosen NLL."},
    )
    discopop_tau: float = field(
        default=0.05,
        metadata={"help": "DiscoPOP's temperature τ > 0 of the sigmoid that blends logistic and exponential parts."},
    )
    reference_free: bool = field(
        default=False,
        metadata={
            "help": "Ignore the reference model (its log-probs are taken as 0, as in the DPO paper's code): no "
            "reference copy is built and no reference forward runs."
        },
    )
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata={
            "help": "Compute the reference log-probs of the train and eval sets in one no-grad pass before "
            "training and store them as dataset columns; the reference copy is then freed and never run again."
        },
    )
    precompute_ref_batch_size: int | None = field(
        default=None,
        metadata={"help": "Batch size (pairs) of that pass; default `per_device_eval_batch_size`."},
    )
    model_adapter_name: str | None = field(
        default=None,
        metadata={
            "help": "With a PeftModel: the adapter to train (default: its active adapter). The reference is "
            "`ref_adapter_name`, or a frozen copy of the trained adapter as it was at the start."
        },
    )
    ref_adapter_name: str | None = field(
        default=None,
        metadata={"help": "With a PeftModel: an adapter already loaded in it to use, frozen, as the reference."},
    )
    ref_logps_cache: bool = field(
        default=True,
        metadata={
            "help": "Keep precomputed reference log-probs on disk, keyed by the reference weights, the tokenized "
            "data and the precision; a later run with the same key skips the pass (e.g. a beta sweep)."
        },
    )
    ref_logps_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where that cache lives; default $HF_DPO_CACHE/ref_logps or ~/.cache/hf_dpo/ref_logps."},
    )

    skip_nonfinite_batches: bool = field(
        default=False,
        metadata={
            "help": "A NaN or infinite loss or gradient stops training (with the step and likely causes) before "
            "it reaches the weights. True: skip such a batch instead (no backward; for gradients, no optimizer "
            "update) and log the running count as `skipped_batches`."
        },
    )

    # ---- the data ----
    column_mapping: dict[str, str] | str | None = field(
        default=None,
        metadata={
            "help": "Rename dataset columns onto prompt/chosen/rejected before use, e.g. "
            '{"question": "prompt", "response_j": "chosen", "response_k": "rejected"}; a JSON string on the '
            "command line."
        },
    )
    max_length: int | None = field(
        default=1024,
        metadata={"help": "Most tokens in prompt + completion; longer completions are cut. None: no limit."},
    )
    max_prompt_length: int | None = field(
        default=512,
        metadata={"help": "Most prompt tokens; longer prompts are cut per `truncation_mode`. None: no limit."},
    )
    max_completion_length: int | None = field(
        default=None,
        metadata={"help": "Most tokens of each completion (its start is kept). None: only `max_length` applies."},
    )
    truncation_mode: str = field(
        default="keep_end",
        metadata={
            "help": "Which part of a too-long prompt to keep: 'keep_end' (the end, next to the answer) or "
            "'keep_start'."
        },
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={"help": "Pad each batch's length up to a multiple of this (8 or 64 suit tensor cores)."},
    )
    dataset_num_proc: int | None = field(
        default=None,
        metadata={"help": "Processes for tokenizing the dataset (`datasets.map(num_proc=...)`)."},
    )

    # ---- the model ----
    disable_dropout: bool = field(
        default=True,
        metadata={
            "help": "Zero every dropout in the policy and reference so both score a sequence the same way; "
            "otherwise the log-ratio is noise at step 0."
        },
    )
    model_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments for `AutoModelForCausalLM.from_pretrained` when `model` (or `ref_model`) "
            'is given as a name or path, e.g. {"dtype": "bfloat16"}; a JSON string on the command line.'
        },
    )

    # ---- defaults that differ from TrainingArguments (see the module docstring) ----
    learning_rate: float = field(default=1e-6, metadata={"help": "The initial learning rate (AdamW)."})
    logging_steps: float = field(
        default=10,
        metadata={"help": "Log every this many steps (a float < 1 is a fraction of the total steps)."},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Drop dataset columns the trainer does not use (its own are always kept)."},
    )

    def __post_init__(self) -> None:
        for name in ("model_init_kwargs", "column_mapping"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{name}={value!r} is not valid JSON: {error}") from None
        self._validate_dpo_fields()
        super().__post_init__()

    # ---- secrets: a pickle of the arguments (training_args.bin, written with every save and pushed to the Hub)
    # never holds a token; copies in memory keep it, so push_to_hub still authenticates.

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in [key for key in state if key.endswith("_token")]:
            state[name] = None
        if isinstance(state.get("model_init_kwargs"), dict):
            state["model_init_kwargs"] = _without_tokens(state["model_init_kwargs"])
        return state

    def __copy__(self) -> DPOTrainingArguments:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> DPOTrainingArguments:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    def to_dict(self) -> dict[str, Any]:
        """As `TrainingArguments.to_dict` (which hides `*_token` fields), hiding a token in `model_init_kwargs` too."""
        values = super().to_dict()
        if isinstance(values.get("model_init_kwargs"), dict):
            values["model_init_kwargs"] = _without_tokens(values["model_init_kwargs"], "<TOKEN>")
        return values

    def __str__(self) -> str:
        text = super().__str__()
        token = (self.model_init_kwargs or {}).get("token") if isinstance(self.model_init_kwargs, dict) else None
        return text.replace(token, "<TOKEN>") if isinstance(token, str) and token else text

    __repr__ = __str__

    def _validate_dpo_fields(self) -> None:
        problems = []
        if not self.beta > 0:
            problems.append(f"beta={self.beta!r} must be > 0")
        loss_types = as_loss_types(self.loss_type)
        known = registered_loss_types()
        for name in loss_types:
            if name not in known:
                problems.append(f"loss_type={name!r} must be one of {', '.join(known)}")
        absolute_targets = sorted(set(loss_types) & {"sppo_hard", "apo_zero", "apo_down"})
        if self.reference_free and absolute_targets:
            problems.append(
                f"reference_free=True with loss_type {absolute_targets}: these losses pull each log-ratio towards a "
                "fixed target, which a bare log-prob (reference 0) cannot reach; use a reference"
            )
        if self.loss_weights is not None and len(self.loss_weights) != len(loss_types):
            problems.append(f"loss_weights={self.loss_weights!r} must have one weight per loss type in {loss_types}")
        if self.rpo_alpha is not None and not self.rpo_alpha >= 0:
            problems.append(f"rpo_alpha={self.rpo_alpha!r} must be >= 0 or None")
        if not self.orpo_lambda >= 0:
            problems.append(f"orpo_lambda={self.orpo_lambda!r} must be >= 0")
        if not self.discopop_tau > 0:
            problems.append(f"discopop_tau={self.discopop_tau!r} must be > 0")
        if not 0.0 <= self.label_smoothing < 0.5:
            problems.append(f"label_smoothing={self.label_smoothing!r} must be in [0, 0.5)")
        for name in (
            "max_length",
            "max_prompt_length",
            "max_completion_length",
            "pad_to_multiple_of",
            "precompute_ref_batch_size",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                problems.append(f"{name}={value!r} must be a positive integer or None")
        if (
            isinstance(self.max_length, int)
            and isinstance(self.max_prompt_length, int)
            and self.max_prompt_length >= self.max_length
        ):
            problems.append(
                f"max_prompt_length={self.max_prompt_length} must be < max_length={self.max_length}, "
                "or no completion token fits"
            )
        if self.truncation_mode not in TRUNCATION_MODES:
            problems.append(f"truncation_mode={self.truncation_mode!r} must be one of {', '.join(TRUNCATION_MODES)}")
        for name in ("model_init_kwargs", "column_mapping"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                problems.append(f"{name}={value!r} must be a dict, a JSON string or None")
        if problems:
            raise ValueError("Invalid DPOTrainingArguments: " + "; ".join(problems))


def _without_tokens(kwargs: dict[str, Any], placeholder: str | None = None) -> dict[str, Any]:
    """``kwargs`` without the value of its ``token`` key (how ``from_pretrained`` takes a Hub token): the key
    dropped, or its value replaced by ``placeholder``."""
    cleaned = {key: value for key, value in kwargs.items() if key != "token"}
    if placeholder is not None and "token" in kwargs:
        cleaned["token"] = placeholder
    return cleaned
