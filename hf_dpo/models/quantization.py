"""Keeping bitsandbytes 4-bit layers trainable on a CPU after they have run in eval mode.

Why (bitsandbytes 0.50, ``bitsandbytes/nn/modules.py``, ``Linear4bit.forward``): on a CPU with AVX-512 BF16
(``Linear4bit.support_avx512bf16_for_cpu``), the first forward of a 4-bit layer in eval mode with an input that does
not require grad repacks its weights for a fused inference kernel, in place and for good
(``quant_state.packing_format_for_cpu``). From then on every forward of that layer, training ones included, takes
``matmul_4bit``'s inference branch (``autograd/_functions.py``): ``F.gemv_4bit``, a custom op with no autograd
kernel, then ``result += bias``. Under grad, torch's fallback for such an op gives an output with no path back to the
layer's input, which autograd takes for a view of a leaf, so

- a layer with a bias (Qwen2's q/k/v projections) fails in ``result += bias`` with "a view of a leaf Variable that
  requires grad is being used in an in-place operation";
- a layer without one (Llama) runs, but its output has no gradient path back to its input ("an autograd kernel
  was not registered", at backward): LoRA adapters get wrong or no gradients, silently (measured on a tiny 4-bit
  Llama after one eval-mode pass: none of its q/v adapters got a gradient);
- the fused kernel computes in bfloat16 whatever ``bnb_4bit_compute_dtype`` says, so a reference pass through
  repacked layers no longer scores as the float32 policy did (measured on a tiny 4-bit Llama: a first loss of
  0.69329 instead of log 2 = 0.69315).

A DPO run has such an eval-mode pass before training forwards by design: the reference pass (adapters disabled,
eval mode, no grad) of every step, the precompute pass, ``evaluate()``. :func:`keep_4bit_layers_trainable` turns
the repacking off for a model's 4-bit layers and undoes it where it has already happened, so every pass takes the
differentiable dequantize-then-matmul path, as on a CPU without AVX-512 BF16.
"""

from __future__ import annotations

import torch

# The attribute bitsandbytes' Linear4bit reads in forward() to decide whether to repack (set from has_avx512bf16()
# when the layer is built); reading it by name keeps this module free of a bitsandbytes import.
_REPACKING_SWITCH = "support_avx512bf16_for_cpu"


def keep_4bit_layers_trainable(model: torch.nn.Module) -> int:
    """Turn off bitsandbytes' CPU inference repacking in every 4-bit layer of ``model`` and unpack the layers already
    repacked, so training forwards after eval-mode ones keep their gradients (see the module docstring).

    Call it once on each model a run holds (policy and reference) before any forward; a model without 4-bit layers
    is left alone. Returns the number of 4-bit layers found.
    """
    # vars(): the layers themselves, not wrappers (peft's LoRA layers) that may forward attribute reads to them
    layers = [module for module in model.modules() if _REPACKING_SWITCH in vars(module)]
    for layer in layers:
        setattr(layer, _REPACKING_SWITCH, False)
        weight = layer.weight
        if getattr(weight.quant_state, "packing_format_for_cpu", False):
            # bitsandbytes' own way back, as Linear4bit._save_to_state_dict does before saving
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)
    return len(layers)
