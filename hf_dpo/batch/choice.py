"""The batch layout a run uses: each prompt held once per pair where every model that scores the batch reads that
layout exactly, else padded rows, with the reason in the log."""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any

import torch

from hf_dpo.batch.attention import attention_support
from hf_dpo.batch.dense_mask import MASKED_ATTENTION
from hf_dpo.batch.lists import ListDataCollator
from hf_dpo.batch.padded import DPODataCollator, UnpairedDataCollator
from hf_dpo.batch.shared_prompt import SharedPromptCollator
from hf_dpo.batch.vision import VisionCollator
from hf_dpo.batch.vision_inputs import vision_layout_support
from hf_dpo.models.wrappers import base_model

logger = logging.getLogger(__name__)


def shared_prompt_support(model: torch.nn.Module, router: bool = False) -> str | None:
    """``None`` when ``model`` (maybe DDP- and PEFT-wrapped) reads the shared-prompt layout exactly, else why not:
    through the attention function (:mod:`~hf_dpo.batch.attention`), or else through the dense 4D mask (which a
    trained ``router`` loss cannot take: it reads a 2D mask)."""
    function = attention_support(model)
    if function is None:
        return None
    dense = dense_mask_support(model)
    if dense is None and router:
        dense = "the router's load-balancing loss reads a 2D mask, which the dense mask replaces"
    return None if dense is None else f"{function}; {dense}"


def dense_mask_support(model: torch.nn.Module) -> str | None:
    """``None`` when ``model`` reads the shared-prompt layout exactly through a dense 4D mask, else why not."""
    model = base_model(model)
    config = getattr(model, "config", None)
    attention = getattr(config, "_attn_implementation", None)
    if attention not in MASKED_ATTENTION:
        return f"attention implementation {attention!r} takes no 4D mask (sdpa and eager do)"
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return f"{type(model).__name__}.forward takes no position_ids"
    layer_types = set(getattr(config, "layer_types", None) or ())
    if layer_types - {"full_attention"}:
        return f"its layers are not all full attention ({', '.join(sorted(layer_types))})"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "sliding-window attention would ignore the 4D mask's window"
    return None


def default_collator(
    models: list[Any],
    pad_token_id: int,
    args: Any,
    unpaired: bool,
    with_kl: bool,
    router: bool,
    processor: Any = None,
    lists: bool = False,
) -> Any:
    """The collator of the batch layout every model in ``models`` reads exactly: each prompt held once per pair
    (or per list of answers, with ``lists``; a row per pair, or the batch in one row with ``padding_free``) where
    they can (:func:`shared_prompt_support`, and with images :func:`~hf_dpo.batch.vision_inputs.vision_layout_support`),
    else padded rows. With a ``processor`` (rows with images), the layout's collator inside a
    :class:`~hf_dpo.batch.vision.VisionCollator`."""
    pad = (pad_token_id, args.pad_to_multiple_of)
    why_not = "prefix_sharing=False" if not args.prefix_sharing else None
    for model in filter(None, models):  # the policy, and the reference's own model when it has one
        why_not = why_not or shared_prompt_support(model, router)
        why_not = why_not or (vision_layout_support(model) if processor is not None else None)
    if why_not is None:
        logger.info("batches share each prompt between its completions%s", " in one row" * args.padding_free)
        collator = SharedPromptCollator(
            *pad, padding_free=args.padding_free, unpaired=unpaired, with_kl=with_kl, lists=lists
        )
    else:
        message = f"batches are padded, one row per sequence: {why_not}"
        if args.padding_free:
            warnings.warn(f"padding_free=True needs the shared-prompt layout; {message}", UserWarning, stacklevel=3)
        else:
            logger.info(message)
        if lists:
            collator = ListDataCollator(*pad)
        else:
            collator = UnpairedDataCollator(*pad, with_kl) if unpaired else DPODataCollator(*pad)
    return collator if processor is None else VisionCollator(collator, processor)
