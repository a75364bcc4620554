"""Small facts about and operations on a model that several modules need: PEFT or not, quantized or not, modes."""

from __future__ import annotations

from typing import Any

from hf_dpo.models.wrappers import base_model


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def is_quantized(model: Any) -> bool:
    """Loaded in 4 or 8 bits by bitsandbytes (such a model is placed when loaded and refuses ``.to()``)."""
    model = base_model(model)
    return getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)


def router_aux_loss_coef(model: Any, args: Any) -> float:
    """The weight of a mixture-of-experts router's load-balancing loss: ``args.router_aux_loss_coef``, else the
    model config's own; 0 for a model without experts (where asking for one is an error)."""
    base = base_model(model)
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
