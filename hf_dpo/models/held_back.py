"""bitsandbytes, imported only where a run quantizes (no torch here: the command holds it back before anything loads).

bitsandbytes is imported by ``import peft`` (``peft/helpers.py``) and by peft's LoRA dispatch
(``is_bnb_4bit_available``) whether or not anything is quantized; on a CPU with AVX-512 BF16 its import logs
"Failed to load CPU gemm_4bit_forward from kernels-community". :func:`bitsandbytes_held_back` makes it look
uninstalled (peft and transformers both run without it) until :func:`release_bitsandbytes` is called for a run
that quantizes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

BITSANDBYTES = "bitsandbytes"


# The (module, function) checks whose answer, "is bitsandbytes installed?", is cached: forgotten when it is held back
# and when it is released.
_AVAILABILITY_CHECKS = (
    ("peft.import_utils", "is_bnb_available"),
    ("peft.import_utils", "is_bnb_4bit_available"),
    ("transformers.utils.import_utils", "is_bitsandbytes_available"),
    ("accelerate.utils.imports", "is_bnb_available"),
)


def bitsandbytes_is_held_back() -> bool:
    return BITSANDBYTES in sys.modules and sys.modules[BITSANDBYTES] is None


@contextlib.contextmanager
def bitsandbytes_held_back() -> Iterator[None]:
    """Run the block with ``import bitsandbytes`` failing as if it were not installed, unless it is already imported
    or :func:`release_bitsandbytes` is called inside the block; afterwards it imports normally again.

    A ``None`` entry in ``sys.modules`` is Python's way to make an import raise ``ModuleNotFoundError``, and it makes
    ``importlib.util.find_spec`` return ``None``, which is how peft and transformers check for the package.
    """
    held = BITSANDBYTES not in sys.modules
    if held:
        sys.modules[BITSANDBYTES] = None
        _forget_cached_availability()
    try:
        yield
    finally:
        if held:
            release_bitsandbytes()


def release_bitsandbytes() -> None:
    """Let ``import bitsandbytes`` work again (a run that quantizes), forgetting cached "not installed" answers."""
    if bitsandbytes_is_held_back():
        del sys.modules[BITSANDBYTES]
    _forget_cached_availability()


def _forget_cached_availability() -> None:
    for module_name, function_name in _AVAILABILITY_CHECKS:
        check = getattr(sys.modules.get(module_name), function_name, None)
        if hasattr(check, "cache_clear"):
            check.cache_clear()
