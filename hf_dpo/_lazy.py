"""Public surfaces that import on first use: a package's ``__init__`` names what it offers and where each name
lives, and nothing heavy (torch, transformers, peft) is imported until a name is read. ``hf-dpo plot``, ``--help``
and the command's one-line errors stay fast, and bitsandbytes stays held back until a run quantizes.

    __getattr__, __dir__, __all__ = lazy_surface(__name__, {"DataFormatError": "hf_dpo.data.errors", ...})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_surface(
    package: str, homes: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose public names live in the modules ``homes`` maps
    them to (PEP 562)."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            return getattr(importlib.import_module(homes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(homes)

    return __getattr__, __dir__, sorted(homes)
