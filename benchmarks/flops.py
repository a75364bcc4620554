"""FLOPs of a DPO step, counted from the model's shape and the tokens each sequence holds (matrix multiplies only,
2 FLOPs per multiply-add), for model-FLOPs utilisation (MFU).

    from flops import Shape, dpo_step_flops
    dpo_step_flops(Shape.llama3_8b(), attended=[(2048, 2048)] * 4, lora=True)

Convention (as in the PaLM paper's MFU): what the step must compute, not what it recomputes. A forward pass costs
``2 · N · T`` for the ``N`` weights of the linear layers (embeddings excluded, the output head included) over ``T``
tokens, plus attention's ``QK^T`` and ``AV``: ``4 · d · Σ (query, key) pairs attended`` per layer. A backward pass
costs twice its forward when every weight trains; with LoRA (frozen base weights) only the input gradients remain,
the same cost as the forward. The reference adds one forward without backward. Activation checkpointing's
recomputation is not counted (hardware does it, the model does not need it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """A Llama-style decoder's shape."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @classmethod
    def llama3_8b(cls) -> Shape:
        return cls(layers=32, hidden=4096, intermediate=14336, heads=32, kv_heads=8, vocab=128256)

    @property
    def linear_weights(self) -> int:
        """Weights of the linear layers that every token goes through (the output head too)."""
        kv = self.hidden // self.heads * self.kv_heads
        per_layer = self.hidden * (2 * self.hidden + 2 * kv) + 3 * self.hidden * self.intermediate
        return self.layers * per_layer + self.hidden * self.vocab


def forward_flops(shape: Shape, attended: list[tuple[int, int]], head_tokens: int | None = None) -> float:
    """One forward pass over sequences given as ``(tokens, attended pairs)``: ``tokens`` through the layers,
    ``attended pairs`` the (query, key) pairs causal attention computes for them (``t (t + 1) / 2`` for a plain
    sequence). ``head_tokens``: the tokens projected through the output head (all of them by default; only the
    scored positions when the head runs on the hidden states alone)."""
    tokens = sum(count for count, _ in attended)
    head = shape.hidden * shape.vocab
    body = 2 * (shape.linear_weights - head) * tokens
    head_flops = 2 * head * (tokens if head_tokens is None else head_tokens)
    attention = 4 * shape.hidden * shape.layers * sum(pairs for _, pairs in attended)
    return body + head_flops + attention


def causal_pairs(tokens: int) -> int:
    return tokens * (tokens + 1) // 2


def dpo_step_flops(
    shape: Shape,
    attended: list[tuple[int, int]],
    lora: bool = True,
    reference: bool = True,
    head_tokens: int | None = None,
) -> float:
    """Policy forward + backward (input gradients only with ``lora``), plus the reference's forward."""
    forward = forward_flops(shape, attended, head_tokens)
    backward = forward if lora else 2 * forward
    return forward + backward + (forward if reference else 0.0)


def padded_attended(prompt: int, chosen: int, rejected: int) -> list[tuple[int, int]]:
    """A pair as two padded rows (TRL's layout, padding aside): the prompt computed twice."""
    return [(prompt + chosen, causal_pairs(prompt + chosen)), (prompt + rejected, causal_pairs(prompt + rejected))]


def shared_attended(prompt: int, chosen: int, rejected: int) -> list[tuple[int, int]]:
    """A pair as one group (hf_dpo's shared prompt): the prompt once, the rejected part attending prompt + itself."""
    return [
        (prompt + chosen, causal_pairs(prompt + chosen)),
        (rejected, rejected * prompt + causal_pairs(rejected)),
    ]


# Dense bf16 tensor-core peaks (FLOP/s), from the vendors' data sheets (SXM parts, no sparsity).
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def peak_flops(device_name: str) -> float | None:
    """The bf16 peak of a GPU by its name (``torch.cuda.get_device_name()``), or None when unknown."""
    return next((peak for key, peak in PEAK_BF16.items() if key in device_name), None)
