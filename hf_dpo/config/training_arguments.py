"""DPOTrainingArguments: the DPO knobs on top of transformers.TrainingArguments, each documented once.

Defaults that differ from `TrainingArguments`, and why:

- ``learning_rate=1e-6``: DPO moves a model that is already good; the paper and most full fine-tunes use 5e-7..1e-6.
  With LoRA, raise it (1e-5..5e-5 are common).
- ``logging_steps=10``: reward metrics are noisy per step and preference runs are short; 500 would log nothing.
- ``bf16=None``: as TRL, bfloat16 wherever a GPU supports it, but off on a CPU instead of an error.
- activation (gradient) checkpointing on unless set, as TRL's ``gradient_checkpointing=True``: a TRL config that fits
  in memory with TRL fits with us. Off is one field away (``activation_checkpointing=False``): faster steps, more memory.
- ``remove_unused_columns=False``: the raw ``prompt``/``chosen``/``rejected`` columns are not arguments of the
  model's ``forward``; the trainer tokenizes them itself and the collator ignores columns it does not need. (With
  ``True`` the trainer still keeps its own columns.)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from hf_dpo.config.secrets import TokensRedacted
from hf_dpo.config.validation import check_arguments
from hf_dpo.losses import LOSS_TYPES


@dataclass
class DPOTrainingArguments(TokensRedacted, TrainingArguments):
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

    bco_pair_running_mean: bool = field(
        default=False,
        metadata={
            "help": "bco_pair: classify each reward against the running mean of every training reward so far (the "
            "BCO paper's δ, over all processes, saved in checkpoints). False: δ = 0, as TRL computes bco_pair."
        },
    )
    use_weighting: bool = field(
        default=False,
        metadata={
            "help": "WPO: weight each pair's loss by the policy's length-normalised probability of both "
            "completions (no gradient through the weight). Not for aot/aot_unpaired, which sort the batch."
        },
    )
    ld_alpha: float | None = field(
        default=None,
        metadata={
            "help": "LD-DPO: weight in [0, 1] of the log-probs of the tokens past the shorter completion of a "
            "pair (policy and reference alike); 1 or None: plain sums."
        },
    )
    f_divergence_type: str = field(
        default="reverse_kl",
        metadata={
            "help": "f-DPO's divergence: reverse_kl (plain DPO), forward_kl, js_divergence or alpha_divergence. "
            "Only for sigmoid, sigmoid_norm, hinge, ipo, exo_pair, robust, discopop and sft."
        },
    )
    f_alpha_divergence_coef: float = field(
        default=0.5,
        metadata={"help": "α of alpha_divergence (its limit α = 1 is the reverse KL)."},
    )
    sync_ref_model: bool = field(
        default=False,
        metadata={
            "help": "TR-DPO: every `ref_model_sync_steps` steps the reference becomes α·policy + (1-α)·reference "
            "(α = `ref_model_mixup_alpha`); works with a frozen copy and with PEFT (the reference adapter moves)."
        },
    )
    ref_model_mixup_alpha: float = field(
        default=0.6,
        metadata={"help": "TR-DPO's α in [0, 1]: 1 copies the policy into the reference."},
    )
    ref_model_sync_steps: int = field(
        default=512,
        metadata={"help": "TR-DPO's τ: optimizer steps between two updates of the reference."},
    )

    list_pair_loss_type: str = field(
        default="sigmoid",
        metadata={
            "help": "Lists of answers: the paired loss `all_pairs` applies to every ordered pair of a list (any loss "
            "on pairs: sigmoid, ipo, hinge, ...), averaged over the list's pairs. A paired `loss_type` on lists does "
            "the same with itself."
        },
    )
    score_temperature: float = field(
        default=0.0,
        metadata={
            "help": "Lists of answers: α of best_vs_rest (InfoNCA) and nca, whose targets are softmax(scores / α); "
            "0: the best answer(s) alone. With a ranking the scores are the negated ranks."
        },
    )

    desirable_weight: float = field(
        default=1.0,
        metadata={
            "help": "KTO: λ_D, the weight of desirable completions' losses. With unbalanced data, choose the "
            "weights so that desirable_weight·n_D / (undesirable_weight·n_U) lies in [1, 4/3] (the KTO paper's "
            "advice; a warning says when it does not)."
        },
    )
    undesirable_weight: float = field(
        default=1.0,
        metadata={"help": "KTO: λ_U, the weight of undesirable completions' losses."},
    )

    doctor: bool = field(
        default=True,
        metadata={
            "help": "Warn once, with the likely cause and a knob, when the logs show a known DPO failure (loss "
            "stuck at log 2, chosen log-probs falling, a too-easy start, growing answers); never stops a run."
        },
    )
    generate_samples: int = field(
        default=0,
        metadata={
            "help": "At each evaluation, greedy answers to this many fixed evaluation prompts, written to "
            "OUTPUT_DIR/samples.jsonl and sent to every report_to integration that takes a table. 0: off."
        },
    )
    samples_max_new_tokens: int = field(
        default=64, metadata={"help": "Length limit of those sample answers (tokens)."}
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
    score_column: str | None = field(
        default=None,
        metadata={
            "help": "Lists of answers given as dicts (UltraFeedback's `completions`): the key of each answer's score, "
            "higher is better, e.g. 'overall_score'. The answer's text is under 'response', 'answer', 'completion' "
            "or 'text'."
        },
    )
    ranking_column: str | None = field(
        default=None,
        metadata={
            "help": "Lists of answers given as dicts (Nectar's `answers`): the key of each answer's rank, 1 the best, "
            "e.g. 'rank'."
        },
    )
    max_completions_per_prompt: int | None = field(
        default=None,
        metadata={
            "help": "Lists of answers: keep at most this many per prompt (>= 2): the best, the worst and an even "
            "spread between; the rest is left out and counted. None: every answer."
        },
    )
    max_length: int | None = field(
        default=1024,
        metadata={"help": "Most tokens in prompt + completion; longer completions are cut. None: no limit."},
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Most prompt tokens; longer prompts are cut per `truncation_mode`. None: no separate limit (a "
            "prompt that alone fills `max_length` drops its row, counted in the logs)."
        },
    )
    max_completion_length: int | None = field(
        default=None,
        metadata={"help": "Most tokens of each completion (its start is kept). None: only `max_length` applies."},
    )
    truncation_mode: str = field(
        default="keep_start",
        metadata={
            "help": "What a too-long row keeps. 'keep_start' (TRL's default): the start of prompt + completion, "
            "cut at `max_length` (a row whose prompt alone fills it is dropped, counted in the logs), and the start "
            "of a prompt longer than `max_prompt_length`. 'keep_end': the end of the prompt, next to the answer (the "
            "end of its first `max_prompt_length` tokens' worth, or what leaves room within `max_length` for the "
            "longer completion); completions always keep their start."
        },
    )
    pad_to_multiple_of: int | str | None = field(
        default=None,
        metadata={
            "help": "Pad each batch's length up to a multiple of this (8 or 64 suit tensor cores); 'auto' (TRL's "
            "default): 128 on Neuron devices, which compile once per shape, else no rounding."
        },
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Put the whole batch in one row without padding (the pairs kept apart by the attention mask). "
            "By default pairs already share rows where they fit (see prefix_sharing), without lengthening any."
        },
    )
    prefix_sharing: bool = field(
        default=True,
        metadata={
            "help": "Read each prompt once per pair: one row `prompt + chosen + rejected`, the rejected part blind "
            "to the chosen one (exact). Models whose attention takes no 4D mask (FlashAttention, sliding "
            "windows) keep the padded `[chosen; rejected]` layout; the log says which layout runs."
        },
    )
    fused_lm_head: bool = field(
        default=True,
        metadata={
            "help": "Score completion tokens from the final hidden states, projecting only them through lm_head a "
            "chunk at a time: no logits tensor (exact). Models whose head does more than a Linear keep the logits."
        },
    )
    pad_token: str | None = field(
        default=None,
        metadata={"help": "Deprecated (as in TRL): set tokenizer.pad_token instead. A token of the vocabulary."},
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
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow model and tokenizer code from the Hub repository when loading by name."},
    )
    router_aux_loss_coef: float | None = field(
        default=None,
        metadata={
            "help": "Mixture-of-experts models: the weight of the router's load-balancing loss added to the "
            "training loss (logged as `aux_loss`). None: the model config's own `router_aux_loss_coef`; 0: off. "
            "Refused for a model without experts."
        },
    )
    activation_offloading: bool = field(
        default=False,
        metadata={"help": "Keep saved activations on the CPU between forward and backward (less GPU memory)."},
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
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "The older name of `activation_checkpointing` (deprecated by transformers 5). Left unset with "
            "`activation_checkpointing` unset: on, as TRL's DPOConfig has it (activations recomputed in backward: less "
            "memory, slower steps); set either to false for speed.",
            "nargs": "?",  # as TrainingArguments has it: a bare --gradient_checkpointing means True
            "const": True,
        },
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bfloat16 mixed precision. None (TRL's default): on where a GPU supports it and fp16 is off; "
            "off on a CPU (set it, with use_cpu, on CPUs with AVX-512 BF16 or AMX)."
        },
    )

    __repr__ = TokensRedacted.__str__  # @dataclass would write its own repr, with the tokens in it

    def __post_init__(self) -> None:
        for name in ("model_init_kwargs", "column_mapping"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{name}={value!r} is not valid JSON: {error}") from None
        if getattr(self, "activation_checkpointing", None) is None and self.gradient_checkpointing is None:
            # TRL's default, set through the current name so no deprecation warning fires for a default
            checkpointing = (
                "activation_checkpointing" if hasattr(self, "activation_checkpointing") else "gradient_checkpointing"
            )
            setattr(self, checkpointing, True)
        if self.bf16 is None:  # TRL's default: bf16 unless fp16, where the hardware has it (never on a bare CPU)
            self.bf16 = not self.fp16 and _cuda_has_bf16()
        if self.pad_token is not None:
            warnings.warn(
                "pad_token is deprecated (as in TRL): set tokenizer.pad_token and pass the tokenizer instead",
                FutureWarning,
                stacklevel=3,
            )
        check_arguments(self)
        super().__post_init__()
        if self.dataloader_pin_memory and not _has_accelerator():
            # torch ignores pinning without an accelerator and warns so at every dataloader: nothing changes but
            # the warning (use_cpu=True switches it off the same way in TrainingArguments)
            self.dataloader_pin_memory = False
        if self.pad_to_multiple_of == "auto":  # Neuron compiles once per input shape: few shapes
            self.pad_to_multiple_of = 128 if self.device.type == "neuron" else None


def _has_accelerator() -> bool:
    import torch

    return torch.accelerator.is_available()


def _cuda_has_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
