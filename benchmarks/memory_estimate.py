"""GPU memory that a DPO recipe needs, computed from the model's shape (no GPU, no download).

    python benchmarks/memory_estimate.py            # the tables quoted in recipes/one_gpu/ and recipes/multi_gpu/

These are estimates, not measurements: weights + LoRA training state + activations with activation
checkpointing + the float32 logits of the completion positions, plus a fixed 0.8 GiB for the CUDA context and
allocator slack. Assumptions are written next to each term.

A vision-language model (:func:`estimate_vision`) adds its vision tower's weights (4-bit under QLoRA too:
bitsandbytes quantizes every linear layer but the output head) and one image's pass through the frozen tower (LoRA on
the language model: nothing of it is kept for backward), and its image tokens join the prompt: read once per pair in
the shared-prompt layout, twice (chosen and rejected rows) in TRL's padded one.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30


@dataclass
class Shape:
    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> list[tuple[int, int]]:
        kv = self.kv_heads * self.head_dim
        return [
            (self.hidden, self.hidden),  # q
            (self.hidden, kv),  # k
            (self.hidden, kv),  # v
            (self.hidden, self.hidden),  # o
            (self.hidden, self.intermediate),  # gate
            (self.hidden, self.intermediate),  # up
            (self.intermediate, self.hidden),  # down
        ]

    @property
    def block_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_shapes())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)  # input embedding + lm_head


SHAPES = [
    Shape("Llama-2-7B (7B-shaped Llama)", 32, 4096, 11008, 32, 32, 32000),
    Shape("Llama-3-8B", 32, 4096, 14336, 32, 8, 128256),
    Shape("Mistral-7B-v0.3", 32, 4096, 14336, 32, 8, 32768),
    Shape("Qwen2.5-7B", 28, 3584, 18944, 28, 4, 152064),
]


def estimate(shape: Shape, four_bit: bool, lora_r: int = 16, prompt: int = 512, completion: int = 512) -> dict:
    tokens = 2 * (prompt + completion)  # batch of 1 pair: chosen and rejected sequences
    # NF4 with double quantisation: 4 bits + ~0.127 bits of scales per weight; embeddings and lm_head stay bf16.
    weights = shape.block_params * (4.127 / 8 if four_bit else 2) + shape.embedding_params * 2
    lora = shape.layers * sum(lora_r * (a + b) for a, b in shape.linear_shapes())
    # fp32 LoRA weights and grads (8 B) + optimizer states: paged 8-bit AdamW (2 B) or fp32 AdamW (8 B)
    training_state = lora * (8 + (2 if four_bit else 8))
    # checkpointed layer inputs (bf16) + one layer recomputed: attention and MLP intermediates (bf16, ~6 tensors)
    activations = shape.layers * tokens * shape.hidden * 2 + tokens * (4 * shape.hidden + 3 * shape.intermediate) * 2
    # logits kept from the first completion position: float32 after autocast, plus their gradient
    logits = 2 * (completion + 1) * shape.vocab * 4 * 2
    total = weights + training_state + activations + logits + 0.8 * GIB
    return {
        "weights": weights / GIB,
        "lora_params_M": lora / 1e6,
        "training_state": training_state / GIB,
        "activations": (activations + logits) / GIB,
        "total": total / GIB,
    }


@dataclass
class VisionShape:
    """A ViT-style vision tower with a patch-merging projector into the language model (Qwen2-VL's design)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    patch: int = 14
    merge: int = 2  # merge x merge patches become one image token
    gated_mlp: bool = True  # gate/up/down (SwiGLU), else up/down

    @property
    def params(self) -> int:
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.intermediate
        return self.layers * (4 * self.hidden * self.hidden + mlp)  # qkv + proj, and the MLP

    def projector_params(self, text_hidden: int) -> int:
        merged = self.hidden * self.merge * self.merge
        return merged * merged + merged * text_hidden  # the merger's two linear layers

    def patches(self, side: int) -> int:
        return (side // self.patch) ** 2

    def image_tokens(self, side: int) -> int:
        return self.patches(side) // (self.merge * self.merge)


# Qwen2.5-VL-7B-Instruct: Qwen2.5-7B's language model and a 32-block ViT (1280 wide, SwiGLU 3420), patches of 14
# merged 2 x 2 into one image token
QWEN25_VL_VISION = VisionShape("Qwen2.5-VL-7B vision tower", 32, 1280, 3420)


def estimate_vision(
    shape: Shape,
    vision: VisionShape,
    four_bit: bool,
    image_side: int = 1008,
    prompt: int = 128,
    completion: int = 512,
    shared_prompt: bool = True,
    lora_r: int = 16,
) -> dict:
    """:func:`estimate` for a vision-language model with one image of ``image_side`` pixels a side per pair, ``prompt``
    text tokens and ``completion`` tokens per answer; LoRA on the language model only (the tower frozen)."""
    image_tokens = vision.image_tokens(image_side)
    prompt_tokens = prompt + image_tokens
    # the language model's tokens per pair: the prompt once (shared) or in both rows (padded)
    tokens = prompt_tokens + 2 * completion if shared_prompt else 2 * (prompt_tokens + completion)
    text = estimate(shape, four_bit, lora_r, prompt=prompt_tokens, completion=completion)
    # estimate() counted 2 * (prompt + completion) tokens of activations: rescale that term to the layout's tokens
    activations_per_token = (text["activations"] * GIB - 2 * (completion + 1) * shape.vocab * 8) / (
        2 * (prompt_tokens + completion)
    )
    logits = 2 * (completion + 1) * shape.vocab * 4 * 2
    vision_params = vision.params + vision.projector_params(shape.hidden)
    vision_weights = vision_params * (4.127 / 8 if four_bit else 2)
    # a frozen tower keeps nothing for backward: one layer's input, attention and MLP intermediates at a time (bf16)
    vision_pass = vision.patches(image_side) * (4 * vision.hidden + 2 * vision.intermediate) * 2
    activations = activations_per_token * tokens + logits + vision_pass
    total = text["weights"] * GIB + vision_weights + text["training_state"] * GIB + activations + 0.8 * GIB
    return {
        "image_tokens": image_tokens,
        "vision_params_M": vision_params / 1e6,
        "weights": (text["weights"] * GIB + vision_weights) / GIB,
        "lora_params_M": text["lora_params_M"],
        "training_state": text["training_state"],
        "activations": activations / GIB,
        "total": total / GIB,
    }


def estimate_sharded(
    shape: Shape, gpus: int, full: bool, lora_r: int = 16, pairs: int = 1, prompt: int = 512, completion: int = 512
) -> dict:
    """Per GPU, with the policy sharded over ``gpus`` (ZeRO-3 or FSDP2, bf16 mixed precision, checkpointing).

    Full fine-tune: bf16 weights (2 B) + fp32 master weights (4 B) + AdamW moments (8 B) + bf16 gradients (2 B) per
    parameter, all sharded, plus the frozen reference sharded the same way (2 B). LoRA: the bf16 base sharded
    (2 B), fp32 LoRA weights, gradients and AdamW state (16 B) replicated; the reference is the base with the
    adapters disabled (nothing more). Both: two layers' parameters gathered at a time, the checkpointed layer
    inputs of ``pairs`` pairs, and the float32 completion logits.
    """
    params = shape.block_params + shape.embedding_params
    if full:
        sharded = params * (2 + 4 + 8 + 2 + 2) / gpus
        lora_state = 0.0
    else:
        sharded = params * 2 / gpus
        lora_state = shape.layers * sum(lora_r * (a + b) for a, b in shape.linear_shapes()) * 16
    gathered = 2 * (shape.block_params / shape.layers) * 2  # two layers in bf16 while they run
    tokens = pairs * 2 * (prompt + completion)
    activations = shape.layers * tokens * shape.hidden * 2 + tokens * (4 * shape.hidden + 3 * shape.intermediate) * 2
    logits = pairs * 2 * (completion + 1) * shape.vocab * 4 * 2
    total = sharded + lora_state + gathered + activations + logits + 0.8 * GIB
    return {"sharded_state": sharded / GIB, "activations": (activations + logits) / GIB, "total": total / GIB}


def main() -> None:
    print(f"{'model':30}{'mode':8}{'weights':>9}{'LoRA M':>8}{'train st':>9}{'activ':>8}{'total GiB':>11}")
    for shape in SHAPES:
        for four_bit in (True, False):
            row = estimate(shape, four_bit)
            print(
                f"{shape.name:30}{'QLoRA' if four_bit else 'LoRA':8}{row['weights']:9.1f}{row['lora_params_M']:8.0f}"
                f"{row['training_state']:9.2f}{row['activations']:8.2f}{row['total']:11.1f}"
            )

    print()
    qwen = next(shape for shape in SHAPES if shape.name == "Qwen2.5-7B")
    print(
        f"{'Qwen2.5-VL-7B, 1 image':30}{'mode':8}{'layout':8}{'img tok':>8}{'weights':>9}{'activ':>8}{'total GiB':>11}"
    )
    for four_bit in (True, False):
        for shared in (True, False):
            row = estimate_vision(qwen, QWEN25_VL_VISION, four_bit, shared_prompt=shared)
            print(
                f"{'1008 px, 128 + 2 x 512 tokens':30}{'QLoRA' if four_bit else 'LoRA':8}{'shared' if shared else 'padded':8}"
                f"{row['image_tokens']:8d}{row['weights']:9.1f}{row['activations']:8.2f}{row['total']:11.1f}"
            )

    print()
    print(f"{'model (sharded, per GPU)':30}{'mode':22}{'sharded':>9}{'activ':>8}{'total GiB':>11}")
    llama3 = next(shape for shape in SHAPES if shape.name == "Llama-3-8B")
    for full, gpus, label in (
        (True, 8, "full, ZeRO-3, 8 GPUs"),
        (False, 2, "LoRA, FSDP2, 2 GPUs"),
        (False, 8, "LoRA, FSDP2, 8 GPUs"),
    ):
        row = estimate_sharded(llama3, gpus, full)
        print(f"{llama3.name:30}{label:22}{row['sharded_state']:9.1f}{row['activations']:8.2f}{row['total']:11.1f}")


if __name__ == "__main__":
    main()
