"""Upstream warnings about upstream's own code, which a user cannot act on, silenced by :func:`silenced` around the
one call that raises them, by exact message: see :data:`PEFT_READS_DEPRECATED_CHECKPOINTING` and
:data:`PEFT_OFFLINE_BASE_CONFIG` for why. (bitsandbytes' import message is kept away in
:mod:`hf_dpo.models.quantization`.)"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def silenced(*known: tuple[str, type[Warning]]) -> Iterator[None]:
    """Run the block with the ``known`` warnings (message regex, category) ignored; every other warning shows."""
    with warnings.catch_warnings():
        for message, category in known:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield
