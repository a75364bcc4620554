"""Tiny vision-language models of several families, their processors and images, all built in code (offline).

    model, processor = build_vlm("qwen2_vl")          # fp32, sdpa, a vision tower of 2 blocks
    rows = vision_rows(4)                             # conversational rows: images + prompt/chosen/rejected

Each processor is the family's own class with its PIL image processor (no torchvision): the image tokens of a prompt
are expanded by the processor's own code, as on the Hub. Qwen's processors take a video processor, which needs
torchvision; without it they are built without their video half (:func:`image_only`), which images never touch.
Every tokenizer ends an assistant turn with its EOS and writes nothing after it, as TRL's vision collator and ours
then tokenize the same completion.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image
from tiny import CORPUS
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedTokenizerFast

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics3", "smolvlm", "llava", "gemma3")
QWEN = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
# Where the chat template writes each image: what the family's processor expands.
IMAGE_PLACEHOLDER = {
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen3_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "idefics3": "<image>",
    "smolvlm": "<image>",
    "llava": "<image>",
    "gemma3": "<start_of_image>",
}
SPECIALS = [
    "<pad>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
    "<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
    "<start_of_image>", "<end_of_image>", "<image_soft_token>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
]  # fmt: skip
# ChatML, content given as text or as parts; no newline after an end of turn, so a completion ends with the EOS.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}IMAGE{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT_SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def build_vision_tokenizer(family: str) -> PreTrainedTokenizerFast:
    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator(CORPUS, vocab_size=460, min_frequency=1, special_tokens=SPECIALS, show_progress=False)
    extra = {}
    if family == "gemma3":  # Gemma 3's processor reads these names off its tokenizer
        extra = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend._tokenizer,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        extra_special_tokens=extra,
    )
    return tokenizer


def image_only(processor_class: type) -> type:
    """``processor_class`` without its video processor (Qwen's need torchvision for theirs; images never use it)."""

    class ImageOnly(processor_class):
        @classmethod
        def get_attributes(cls):
            return ["image_processor", "tokenizer"]

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            processor_class.__init__(self, image_processor, tokenizer, None, chat_template=chat_template)

    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_class.__name__
    return ImageOnly


def _has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or built for another torch ("operator torchvision::nms does not exist")
        return False
    return True


def build_processor(family: str, video: bool = False):
    """The family's processor around a tiny tokenizer; ``video``: a Qwen processor with its video half (needs
    torchvision)."""
    import transformers

    tokenizer = build_vision_tokenizer(family)
    template = CHAT_TEMPLATE.replace("IMAGE", IMAGE_PLACEHOLDER[family])
    if family in QWEN:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        cls = {"qwen2_vl": transformers.Qwen2VLProcessor, "qwen2_5_vl": transformers.Qwen2_5_VLProcessor}.get(
            family, transformers.Qwen3VLProcessor
        )
        patch = 16 if family == "qwen3_vl" else 14  # Qwen3-VL's patches are 16 pixels a side
        images = Qwen2VLImageProcessorPil(
            size={"shortest_edge": (2 * patch) ** 2, "longest_edge": 4 * patch * 6 * patch}, patch_size=patch
        )
        if video:
            from transformers import Qwen2VLVideoProcessor

            return cls(images, tokenizer, Qwen2VLVideoProcessor(), chat_template=template)
        return image_only(cls)(images, tokenizer, chat_template=template)
    if family in ("idefics3", "smolvlm"):  # SmolVLM's own processor needs torchvision and num2words: Idefics3's
        # expands images into the same tokens (<fake_token_around_image>, <row_i_col_j>, <global-img>, <image>)
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

        images = Idefics3ImageProcessorPil(size={"longest_edge": 56}, max_image_size={"longest_edge": 28})
        return transformers.Idefics3Processor(images, tokenizer, image_seq_len=4, chat_template=template)
    if family == "llava":
        from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

        images = LlavaImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
        return transformers.LlavaProcessor(
            images, tokenizer, patch_size=14, vision_feature_select_strategy="default",
            num_additional_image_tokens=1, chat_template=template,
        )  # fmt: skip
    if family == "gemma3":
        from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

        images = Gemma3ImageProcessorPil(size={"height": 28, "width": 28})
        return transformers.Gemma3Processor(images, tokenizer, image_seq_length=4, chat_template=template)
    raise ValueError(family)


def _config(family: str, tokenizer: PreTrainedTokenizerFast, hidden_size: int = 32):
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIALS}
    TEXT = {**TEXT_SIZES, "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size}
    vocab = len(tokenizer)
    special = {"bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if family in QWEN:
        half = hidden_size // TEXT["num_attention_heads"] // 2  # rotary frequencies per head, split t/h/w
        mrope = [half // 4, half // 4, half - 2 * (half // 4)]
        vision = {"depth": 2, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
        if family == "qwen3_vl":  # deepstack: the tower's block 0 features also join the first decoder layer
            vision |= {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "out_hidden_size": hidden_size,
                       "patch_size": 16, "num_position_embeddings": 16, "deepstack_visual_indexes": [0]}  # fmt: skip
            text = {**TEXT, "num_key_value_heads": 2, "head_dim": hidden_size // TEXT["num_attention_heads"],
                    "vocab_size": vocab, "rope_parameters": {"rope_type": "default", "mrope_section": mrope,
                    "rope_theta": 10000.0, "mrope_interleaved": True}, **special}  # fmt: skip
            return AutoConfig.for_model(
                family, text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"], **special,
            )  # fmt: skip
        if family == "qwen2_vl":
            vision |= {"embed_dim": hidden_size, "hidden_size": hidden_size, "mlp_ratio": 2}
        else:
            vision |= {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "out_hidden_size": hidden_size,
                       "fullatt_block_indexes": [1]}  # fmt: skip
        text = {
            **TEXT,
            "num_key_value_heads": 2,
            "vocab_size": vocab,
            "rope_parameters": {"rope_type": "default", "mrope_section": mrope, "rope_theta": 10000.0},
            **special,
        }
        return AutoConfig.for_model(
            family, text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"], **special,
        )  # fmt: skip
    if family in ("idefics3", "smolvlm"):
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
        text = {**TEXT, "num_key_value_heads": 2, "vocab_size": vocab, "model_type": "llama", **special}
        return AutoConfig.for_model(
            family, text_config=text, vision_config={**vision, "image_size": 28, "patch_size": 7}, scale_factor=2,
            image_token_id=ids["<image>"], **special,
        )  # fmt: skip
    if family == "llava":
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
        text = {**TEXT, "num_key_value_heads": 2, "vocab_size": vocab, "model_type": "llama", **special}
        return AutoConfig.for_model(
            family, text_config=text, vision_config={**vision, "model_type": "clip_vision_model", "image_size": 28,
            "patch_size": 14, "projection_dim": 32}, image_token_id=ids["<image>"], vision_feature_layer=-1,
            vision_feature_select_strategy="default", **special,
        )  # fmt: skip
    if family == "gemma3":
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
        text = {**TEXT, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": vocab, "sliding_window": 5,
                "layer_types": ["sliding_attention", "full_attention"], **special}  # fmt: skip
        return AutoConfig.for_model(
            family, text_config=text, vision_config={**vision, "image_size": 28, "patch_size": 7},
            mm_tokens_per_image=4, image_token_id=ids["<image_soft_token>"], boi_token_id=ids["<start_of_image>"],
            eoi_token_id=ids["<end_of_image>"], **special,
        )  # fmt: skip
    raise ValueError(family)


def build_vlm(family: str, seed: int = 0, attention: str = "sdpa", hidden_size: int = 32):
    """A tiny fp32 ``family`` model and its processor."""
    processor = build_processor(family)
    torch.manual_seed(seed)
    config = _config(family, processor.tokenizer, hidden_size)
    model = AutoModelForImageTextToText.from_config(config, attn_implementation=attention).float()
    return model, processor


def tiny_image(seed: int, size: tuple[int, int] = (40, 56)) -> Image.Image:
    """A random RGB image of ``size`` (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def vision_rows(count: int = 4, images_per_row: int = 1, seed: int = 0) -> list[dict]:
    """Conversational rows, TRL's shape: ``images`` and a prompt with one ``{"type": "image"}`` part per image."""
    subjects = ["fox", "dog", "spider", "river", "garden", "window"]
    rows = []
    for index in range(count):
        parts = [{"type": "image"} for _ in range(images_per_row)]
        rows.append(
            {
                "images": [tiny_image(seed + 10 * index + k) for k in range(images_per_row)],
                "prompt": [{"role": "user", "content": [*parts, {"type": "text", "text": f"Is the {subjects[index % 6]} good?"}]}],
                "chosen": [{"role": "assistant", "content": "Answer: yes good" + " yes" * (index % 3)}],
                "rejected": [{"role": "assistant", "content": "Answer: no bad" + " no" * (index % 2)}],
            }
        )  # fmt: skip
    return rows
