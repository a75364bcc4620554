"""Upstream messages about upstream's own code, which a user cannot act on, kept out of a run's output by exact
message, each with its reason:

- warnings raised by one call of ours, silenced around that call (:func:`silenced`):
  :data:`PEFT_READS_DEPRECATED_CHECKPOINTING` and :data:`PEFT_OFFLINE_BASE_CONFIG`;
- log lines of libraries that hf_dpo's own imports pull in, dropped by a filter on their logger
  (:data:`QUIET_LOG_LINES`, installed when this module is imported, which the trainer does).

(bitsandbytes itself is imported only by a run that quantizes: :mod:`hf_dpo.models.quantization`.)
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# A warning is (message regex, category). peft 0.21's PeftModel.__init__ reads the model's `is_gradient_checkpointing`
# property, which transformers 5 deprecates; our call (get_peft_model) cannot avoid it and the user cannot act on it.
PEFT_READS_DEPRECATED_CHECKPOINTING = (r"`is_gradient_checkpointing` is deprecated", FutureWarning)
# peft's save_pretrained asks the Hub whether the base model's config exists, to notice a resized vocabulary; under
# HF_HUB_OFFLINE=1 it cannot ask and warns, then assumes the vocabulary unchanged, which is right for DPO: the
# trainer never resizes embeddings. Raised at every save of a model whose name is a Hub id (the demo's packaged copy).
PEFT_OFFLINE_BASE_CONFIG = (
    r"Could not find a config file in .* - will assume that the vocabulary was not modified",
    UserWarning,
)

# logger name -> the start of each line dropped from it, and why
QUIET_LOG_LINES = {
    # DeepSpeed, when installed, is imported by accelerate at every unwrap_model (even with DeepSpeed off), and its
    # accelerator detection says it found no GPU: on a CPU machine, at every run. A run under DeepSpeed on a GPU
    # never logs it; on a CPU there is nothing to act on.
    "DeepSpeed": ("Setting accelerator to CPU",),
    # bitsandbytes, when imported on a CPU with AVX-512 BF16, tries to fetch a fused kernel for its repacked 4-bit
    # inference path (through the `kernels` package and the Hub) and says to `pip install kernels` when it cannot.
    # hf_dpo turns that path off (keep_4bit_layers_trainable: it breaks training's gradients), so the kernel would
    # never run: nothing to install.
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
    "kernels._internals.hf_hub": ("Skipping publisher trust check for 'kernels-community/",),
    # matplotlib's first import in a fresh environment scans the fonts and says so; the plot is drawn all the same
    "matplotlib.font_manager": ("Matplotlib is building the font cache",),
}


class _DropLines(logging.Filter):
    """Drops records whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_upstream_logs() -> None:
    """Install the filters of :data:`QUIET_LOG_LINES` on their loggers (once; a logger keeps its filters when its
    library configures it later, so this works before or after the library is imported)."""
    for name, starts in QUIET_LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropLines) for existing in logger.filters):
            logger.addFilter(_DropLines(starts))


@contextlib.contextmanager
def silenced(*known: tuple[str, type[Warning]]) -> Iterator[None]:
    """Run the block with the ``known`` warnings (message regex, category) ignored; every other warning shows."""
    with warnings.catch_warnings():
        for message, category in known:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


quiet_upstream_logs()
