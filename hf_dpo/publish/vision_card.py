"""What the model card says of a vision-language run: the images it read, how (the batch layout and why), what
trained of the vision tower, and how to load the result with its processor.

    facts = vision_facts(trainer)      # None for a text run
    vision_rows(facts)                 # the card's table rows
"""

from __future__ import annotations

from typing import Any

from hf_dpo.batch.shared_prompt import SharedPromptCollator
from hf_dpo.batch.vision import VisionCollator
from hf_dpo.batch.vision_inputs import vision_layout_support
from hf_dpo.data.images import image_column
from hf_dpo.models.vision import vision_modules
from hf_dpo.models.wrappers import base_model


def _images_in(dataset: Any) -> int | None:
    """How many images a prepared split holds (from the image column's list lengths, no image is decoded)."""
    name = image_column(getattr(dataset, "column_names", None))
    if name is None or not hasattr(dataset, "data"):
        return None
    if name == "image":
        return len(dataset) - dataset.data.column(name).null_count
    return sum(len(images or ()) for images in dataset.data.column(name).to_pylist())


def _vision_training(model: Any) -> str:
    """Whether the vision tower and projector trained: not at all, through adapters, or in full."""
    names = tuple(f"{name}." for name in vision_modules(model))
    trained = [name for name, parameter in base_model(model).named_parameters() if parameter.requires_grad]
    trained = [name for name in trained if name.startswith(names) or any(f".{n}" in f".{name}" for n in names)]
    if not trained:
        return "frozen (the language model trained)"
    return "adapted with LoRA" if any("lora_" in name for name in trained) else "trained in full"


def vision_facts(trainer: Any) -> dict[str, Any] | None:
    """The card's facts of a run whose batches hold images (a :class:`~hf_dpo.batch.vision.VisionCollator`)."""
    collator = trainer.data_collator
    if not isinstance(collator, VisionCollator):
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(collator.layout, SharedPromptCollator):
        layout = "the shared prompt: each pair's images and prompt read once for both completions"
    else:
        why = vision_layout_support(model) or ("prefix_sharing=False" if not trainer.args.prefix_sharing else None)
        layout = "padded rows: each pair's images read for its chosen and its rejected row" + (
            f" ({why})" if why else ""
        )
    return {
        "processor": type(collator.processor).__name__,
        "model_class": type(base_model(model)).__name__,
        "train_images": _images_in(trainer.train_dataset),
        "layout": layout,
        "vision_tower": _vision_training(model),
    }


def vision_rows(facts: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The card's table on images, ``(name, value)`` rows (nothing for a text run)."""
    if not facts:
        return []
    rows = [("model", facts["model_class"]), ("processor", facts["processor"])]
    if facts["train_images"] is not None:
        rows.append(("training images", facts["train_images"]))
    return [*rows, ("batch layout", facts["layout"]), ("vision tower", facts["vision_tower"])]


def vision_usage(repo: str, base: str | None, is_adapter: bool) -> str:
    """The code that loads the result of a vision-language run: the model (or its base and the adapter) and the
    processor."""
    if is_adapter:
        return (
            "from peft import PeftModel\nfrom transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
            f'base = AutoModelForImageTextToText.from_pretrained("{base or "<base model>"}")\n'
            f'model = PeftModel.from_pretrained(base, "{repo}")\n'
            f'processor = AutoProcessor.from_pretrained("{repo}")'
        )
    return (
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
        f'model = AutoModelForImageTextToText.from_pretrained("{repo}")\n'
        f'processor = AutoProcessor.from_pretrained("{repo}")'
    )
