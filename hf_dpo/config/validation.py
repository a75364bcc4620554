"""The checks of `DPOTrainingArguments`, by topic: each returns the problems it finds, and
:func:`check_arguments` raises them all at once, so a recipe with three mistakes shows three."""

from __future__ import annotations

import difflib
from typing import Any

from hf_dpo.losses import LIST_LOSS_TYPES, as_loss_types, check_f_divergence, is_unpaired, registered_loss_types
from hf_dpo.losses.settings import check_list_settings

TRUNCATION_MODES = ("keep_end", "keep_start")


def check_arguments(args: Any) -> None:
    """Raise one ValueError naming every problem of ``args``."""
    problems = [*loss_and_length_problems(args), *trl_field_problems(args), *list_problems(args)]
    if problems:
        raise ValueError("Invalid DPOTrainingArguments: " + "; ".join(problems))


def loss_and_length_problems(args: Any) -> list[str]:
    """β, the loss types and their parameters, the length budgets and the JSON-valued fields."""
    problems = []
    if not args.beta > 0:
        problems.append(f"beta={args.beta!r} must be > 0")
    loss_types = as_loss_types(args.loss_type)
    known = registered_loss_types()
    for name in loss_types:
        if name not in known:
            # DPO's own loss is "sigmoid" (TRL's name); otherwise the closest spelling, for a typo
            closest = ["sigmoid"] if name.lower() == "dpo" else difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {closest[0]!r}?" if closest else ""
            problems.append(f"loss_type={name!r} must be one of {', '.join(known)}{hint}")
    absolute_targets = sorted(set(loss_types) & {"sppo_hard", "apo_zero", "apo_down"})
    if args.reference_free and absolute_targets:
        problems.append(
            f"reference_free=True with loss_type {absolute_targets}: these losses pull each log-ratio towards a "
            "fixed target, which a bare log-prob (reference 0) cannot reach; use a reference"
        )
    if args.loss_weights is not None and len(args.loss_weights) != len(loss_types):
        problems.append(f"loss_weights={args.loss_weights!r} must have one weight per loss type in {loss_types}")
    if args.rpo_alpha is not None and not args.rpo_alpha >= 0:
        problems.append(f"rpo_alpha={args.rpo_alpha!r} must be >= 0 or None")
    if not args.orpo_lambda >= 0:
        problems.append(f"orpo_lambda={args.orpo_lambda!r} must be >= 0")
    if not args.discopop_tau > 0:
        problems.append(f"discopop_tau={args.discopop_tau!r} must be > 0")
    if not 0.0 <= args.label_smoothing < 0.5:
        problems.append(f"label_smoothing={args.label_smoothing!r} must be in [0, 0.5)")
    for name in (
        "max_length",
        "max_prompt_length",
        "max_completion_length",
        "pad_to_multiple_of",
        "precompute_ref_batch_size",
    ):
        value = getattr(args, name)
        if name == "pad_to_multiple_of" and value == "auto":
            continue
        if value is not None and (not isinstance(value, int) or value < 1):
            problems.append(f"{name}={value!r} must be a positive integer or None")
    if (
        isinstance(args.max_length, int)
        and isinstance(args.max_prompt_length, int)
        and args.max_prompt_length >= args.max_length
    ):
        problems.append(
            f"max_prompt_length={args.max_prompt_length} must be < max_length={args.max_length}, "
            "or no completion token fits"
        )
    if args.truncation_mode not in TRUNCATION_MODES:
        problems.append(f"truncation_mode={args.truncation_mode!r} must be one of {', '.join(TRUNCATION_MODES)}")
    for name in ("model_init_kwargs", "column_mapping"):
        value = getattr(args, name)
        if value is not None and not isinstance(value, dict):
            problems.append(f"{name}={value!r} must be a dict, a JSON string or None")
    return problems


def trl_field_problems(args: Any) -> list[str]:
    """The fields TRL 1.16's DPOConfig and KTOConfig add to ours (WPO, LD-DPO, f-DPO, TR-DPO, KTO)."""
    problems = []
    loss_types = as_loss_types(args.loss_type)
    if is_unpaired(loss_types):
        problems += unpaired_problems(args, loss_types)
    try:
        check_f_divergence(args.f_divergence_type, loss_types)
    except ValueError as error:
        problems.append(str(error))
    if args.use_weighting and {"aot", "aot_unpaired", "aot_pair"} & set(loss_types):
        problems.append("use_weighting=True (WPO) with aot losses, which sort the batch: pair weights do not apply")
    if args.ld_alpha is not None and not 0.0 <= args.ld_alpha <= 1.0:
        problems.append(f"ld_alpha={args.ld_alpha!r} must be in [0, 1] or None")
    if not 0.0 <= args.ref_model_mixup_alpha <= 1.0:
        problems.append(f"ref_model_mixup_alpha={args.ref_model_mixup_alpha!r} must be in [0, 1]")
    if not (isinstance(args.ref_model_sync_steps, int) and args.ref_model_sync_steps >= 1):
        problems.append(f"ref_model_sync_steps={args.ref_model_sync_steps!r} must be a positive integer")
    if args.sync_ref_model and args.precompute_ref_log_probs:
        problems.append(
            "sync_ref_model=True moves the reference during training, so precomputed reference log-probs "
            "would go stale: use one or the other"
        )
    if args.sync_ref_model and args.reference_free:
        problems.append("sync_ref_model=True needs a reference; reference_free=True has none")
    if not (isinstance(args.generate_samples, int) and args.generate_samples >= 0):
        problems.append(f"generate_samples={args.generate_samples!r} must be an integer >= 0 (0: off)")
    if not (isinstance(args.samples_max_new_tokens, int) and args.samples_max_new_tokens >= 1):
        problems.append(f"samples_max_new_tokens={args.samples_max_new_tokens!r} must be an integer >= 1")
    return problems


def unpaired_problems(args: Any, loss_types: list[str]) -> list[str]:
    """KTO's losses take unpaired rows one at a time: they combine with no paired loss and none of its options."""
    problems = []
    if len(loss_types) > 1:
        problems.append(
            f"loss_type {loss_types}: kto and apo_zero_unpaired train on unpaired rows, one loss at a time"
        )
    paired_options = {
        "reference_free": args.reference_free,
        "use_weighting": args.use_weighting,
        "ld_alpha": args.ld_alpha is not None,
        "rpo_alpha": args.rpo_alpha is not None,
        "f_divergence_type": args.f_divergence_type != "reverse_kl",
    }
    for name, used in paired_options.items():
        if used:
            problems.append(f"{name} applies to paired losses, not to loss_type {loss_types[0]!r}")
    for name in ("desirable_weight", "undesirable_weight"):
        if not getattr(args, name) > 0:
            problems.append(f"{name}={getattr(args, name)!r} must be > 0")
    return problems


def list_problems(args: Any) -> list[str]:
    """The fields of lists of answers: the pair loss all_pairs applies, the score temperature, the cap."""
    problems = []
    try:
        check_list_settings(args.list_pair_loss_type, args.score_temperature)
    except ValueError as error:
        problems.append(str(error))
    cap = args.max_completions_per_prompt
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 2):
        problems.append(
            f"max_completions_per_prompt={cap!r} must be an integer >= 2 (a list needs two answers) or None"
        )
    loss_types = as_loss_types(args.loss_type)
    unsmoothed = set(LIST_LOSS_TYPES) - {"all_pairs"}
    if args.label_smoothing and set(loss_types) <= unsmoothed:
        problems.append(
            f"label_smoothing={args.label_smoothing!r} has no meaning for loss_type {loss_types}; it applies to the "
            "paired losses (all_pairs with list_pair_loss_type='sigmoid' smooths each pair)"
        )
    if is_unpaired(loss_types) and set(loss_types) & set(LIST_LOSS_TYPES):
        problems.append(f"loss_type {loss_types}: a loss on lists does not combine with an unpaired one")
    return problems
