"""The model inside the wrappers a run puts around it, one definition for every module that looks inside."""

from __future__ import annotations

from typing import Any


def unwrapped(model: Any) -> Any:
    """The model inside a DDP, FSDP or DeepSpeed wrapper (they expose it as ``.module``); a PeftModel stays one."""
    return getattr(model, "module", model)


def base_model(model: Any) -> Any:
    """The transformers model inside DDP/DeepSpeed (``.module``) and PEFT wrappers."""
    model = unwrapped(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model
