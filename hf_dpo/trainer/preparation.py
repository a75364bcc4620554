"""What DPOTrainer settles before the Trainer exists: its arguments, the policy and tokenizer, named eval sets, the
batch layout, and the facts about the model the step needs (a mixture-of-experts router's loss weight)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

from hf_dpo.batch.padded import DPODataCollator, UnpairedDataCollator
from hf_dpo.batch.shared_prompt import SharedPromptCollator, shared_prompt_support
from hf_dpo.config.training_arguments import DPOTrainingArguments
from hf_dpo.models.loading import load_causal_lm, load_tokenizer, reload_name

logger = logging.getLogger(__name__)

MODEL_TAGS = ["dpo", "hf_dpo"]  # tags the Hub repo of a pushed model, as TRL's trainers do


def checked_args(model: Any, args: DPOTrainingArguments | None) -> DPOTrainingArguments:
    if model is None:
        raise ValueError("DPOTrainer needs a model (an instance or a name/path)")
    if args is None:
        short_name = model_id(model).replace(":", "/").split("/")[-1]  # no colon from an hf_dpo: name in a folder
        return DPOTrainingArguments(output_dir=f"{short_name or 'model'}-dpo")
    if not isinstance(args, DPOTrainingArguments):
        raise TypeError(f"args must be DPOTrainingArguments, got {type(args).__name__}")
    return args


def model_id(model: Any) -> str:
    """The name a model was loaded by (a packaged copy keeps its ``hf_dpo:`` name), or ``""``."""
    return model if isinstance(model, str) else reload_name(model) or ""


def model_and_tokenizer(model: Any, tokenizer: Any, args: DPOTrainingArguments) -> tuple[Any, Any]:
    """The policy (loaded when given by name) and its tokenizer (loaded by the model's name when not given), with
    a pad token: ``args.pad_token``, else the tokenizer's, else its EOS token."""
    name = model_id(model)
    remote_code = {"trust_remote_code": True} if args.trust_remote_code else {}
    if isinstance(model, str):
        model = load_causal_lm(model, role="policy", **{**remote_code, **(args.model_init_kwargs or {})})
    if tokenizer is None:
        if not name:
            raise ValueError("pass processing_class (the tokenizer): the model has no name or path to load one from")
        tokenizer = load_tokenizer(name, **remote_code)
    if args.pad_token is not None:
        if args.pad_token not in tokenizer.get_vocab():
            raise ValueError(f"pad_token={args.pad_token!r} is not in the tokenizer's vocabulary")
        tokenizer.pad_token = args.pad_token
    if getattr(tokenizer, "pad_token", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.warning("the tokenizer has no pad token; using its EOS token %r", tokenizer.eos_token)
    if hasattr(model, "add_model_tags"):
        model.add_model_tags(MODEL_TAGS)
    return model, tokenizer


def default_collator(
    models: list[Any], pad_token_id: int, args: DPOTrainingArguments, unpaired: bool, with_kl: bool, router: bool
) -> Any:
    """The collator of the batch layout every model in ``models`` reads exactly: each prompt held once per pair
    (a row per pair, or the batch in one row with ``padding_free``) where their attention takes the mask, else
    padded rows (also when a mixture-of-experts ``router`` loss is trained: it reads a 2D mask)."""
    pad = (pad_token_id, args.pad_to_multiple_of)
    why_not = "prefix_sharing=False" if not args.prefix_sharing else None
    if router:
        why_not = why_not or "the router's load-balancing loss reads a 2D attention mask"
    for model in filter(None, models):  # the policy, and the reference's own model when it has one
        why_not = why_not or shared_prompt_support(model)
    if why_not is None:
        logger.info("batches share each prompt between its completions%s", " in one row" * args.padding_free)
        return SharedPromptCollator(*pad, padding_free=args.padding_free, unpaired=unpaired, with_kl=with_kl)
    message = f"batches are padded, one row per sequence: {why_not}"
    if args.padding_free:
        warnings.warn(f"padding_free=True needs the shared-prompt layout; {message}", UserWarning, stacklevel=3)
    else:
        logger.info(message)
    return UnpairedDataCollator(*pad, with_kl) if unpaired else DPODataCollator(*pad)


def per_eval_split(eval_dataset: Any, function: Callable[..., Any], *extra: Any) -> Any:
    """``function(dataset, split, *extra)`` on one evaluation dataset, or on each set of a dict or
    ``DatasetDict`` of named sets (the Trainer evaluates each under the ``eval_{name}_`` prefix)."""
    if isinstance(eval_dataset, dict):
        return {name: function(dataset, f"eval_{name}", *extra) for name, dataset in eval_dataset.items()}
    return function(eval_dataset, "eval", *extra)


def router_aux_loss_coef(model: Any, args: DPOTrainingArguments) -> float:
    """The weight of a mixture-of-experts router's load-balancing loss: ``args.router_aux_loss_coef``, else the
    model config's own; 0 for a model without experts (where asking for one is an error)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    has_router = hasattr(config, "output_router_logits")
    if args.router_aux_loss_coef is None:
        return float(getattr(config, "router_aux_loss_coef", 0.0) or 0.0) if has_router else 0.0
    if args.router_aux_loss_coef and not has_router:
        raise ValueError(
            f"router_aux_loss_coef={args.router_aux_loss_coef} but {type(base).__name__} has no mixture-of-experts "
            "router; leave it None"
        )
    return float(args.router_aux_loss_coef)


def warn_if_unbalanced(stats: dict[str, Any] | None, args: DPOTrainingArguments) -> None:
    """The KTO paper's advice for unbalanced data: desirable_weight·n_D / (undesirable_weight·n_U) in [1, 4/3]."""
    desirable, undesirable = (stats or {}).get("desirable"), (stats or {}).get("undesirable")
    if not desirable or not undesirable:
        return
    ratio = args.desirable_weight * desirable / (args.undesirable_weight * undesirable)
    if not 1.0 <= ratio <= 4.0 / 3.0 + 1e-9:
        low, high = undesirable / desirable, 4.0 / 3.0 * undesirable / desirable
        logger.warning(
            "KTO: %d desirable and %d undesirable training rows give desirable_weight·n_D / (undesirable_weight·n_U) "
            "= %.3g; the KTO paper advises [1, 4/3]: with undesirable_weight=%g, desirable_weight in [%.3g, %.3g]",
            desirable,
            undesirable,
            ratio,
            args.undesirable_weight,
            low * args.undesirable_weight,
            high * args.undesirable_weight,
        )
