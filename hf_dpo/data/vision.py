"""One vision-language row -> token ids: images in the prompt, read by the processor, never cut by truncation.

Rows are TRL's: ``images`` (a list per row) or ``image`` (one per row), and ``prompt``/``chosen``/``rejected``,

- **conversational**: the prompt's messages hold ``{"type": "image"}`` parts where each image goes (one per image,
  in order), or plain text, and then, as TRL does, one image part per image is put before the text of the first
  user message;
- **standard**: the prompt is text that holds the processor's image placeholder once per image (Qwen's
  ``<|vision_start|><|image_pad|><|vision_end|>``, LLaVA's and Idefics3's ``<image>``, Gemma 3's
  ``<start_of_image>``).

Images go in the prompt only (a completion with an image part is refused). The processor renders the prompt with
its chat template and expands each placeholder into the image's tokens, so the prompt's ids hold every image
token the model will fill; each completion is tokenized as text alone, with exactly one EOS, as in
:mod:`hf_dpo.data.tokenization`. The image itself is processed into pixels later, in the collator, once per pair
(:mod:`hf_dpo.batch.vision`): a dataset of pixel values would take gigabytes per thousand rows, a column of images
takes what the files take.

Truncation never cuts an image's tokens: a prompt whose cut would reach into its image block (the image tokens
and the special tokens around them) is dropped as DROPPED_IMAGE_CUT, counted with its reason, never shortened.
"""

from __future__ import annotations

from typing import Any

from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.formats import is_conversation, normalise_row
from hf_dpo.data.images import row_images
from hf_dpo.data.tokenization import (
    DROPPED_IDENTICAL,
    DROPPED_NO_ROOM,
    STATUS_COLUMN,
    _tokenize_completion,
    render,
    truncate,
)

DROPPED_IMAGE_CUT = 4  # a status: truncation would cut into the prompt's image tokens


def is_processor(processing_class: Any) -> bool:
    """Whether ``processing_class`` reads images (a processor with an image processor and a tokenizer)."""
    return getattr(processing_class, "image_processor", None) is not None and hasattr(processing_class, "tokenizer")


def text_tokenizer(processing_class: Any) -> Any:
    """The tokenizer inside a processor, or the tokenizer itself."""
    return processing_class.tokenizer if is_processor(processing_class) else processing_class


def _text_view(messages: list[Any], index: int, name: str) -> tuple[list[Any], int]:
    """The messages with each list of content parts turned into its text, and how many image parts they hold."""
    plain, images = [], 0
    for position, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            plain.append(message)
            continue
        texts = []
        for part in content:
            part = {key: value for key, value in part.items() if value is not None} if isinstance(part, dict) else part
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                images += 1
            elif kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise DataFormatError(
                    f"row {index}, field {name!r}, message {position}: a content part must be "
                    f'{{"type": "text", "text": ...}} or {{"type": "image"}}, got {part!r:.80}'
                )
        plain.append({**message, "content": "".join(texts)})
    return plain, images


def multimodal_messages(messages: list[Any], images: int, index: int) -> list[Any]:
    """Every message's content as a list of parts, with one image part per image (TRL's
    ``prepare_multimodal_messages``): plain text messages get the ``images`` parts before the text of their first
    user message; messages with parts must hold exactly ``images`` image parts."""
    converted, placed = [], False
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
            if message.get("role") == "user" and not placed:
                parts = [*({"type": "image"} for _ in range(images)), *parts]
                placed = True
            message = {**message, "content": parts}
        elif isinstance(content, list):
            message = {**message, "content": [{k: v for k, v in part.items() if v is not None} for part in content]}
        converted.append(message)
    found = sum(
        part.get("type") == "image" and "image" not in part
        for message in converted
        if message.get("role") != "tool" and isinstance(message.get("content"), list)
        for part in message["content"]
    )
    if found != images:
        raise DataFormatError(
            f"row {index}, field 'prompt': {images} image(s) in the row and {found} image placeholder(s) "
            '({"type": "image"} parts) in its prompt; give one placeholder per image, in order'
        )
    return converted


def _rows_for_rendering(row: dict[str, Any], index: int, images: int) -> dict[str, Any]:
    """The row checked like a text row (on the text of its parts), then with its messages as parts to render."""
    if "prompt" not in row:
        raise DataFormatError(
            f"row {index}: a row with images needs a 'prompt' column (the images go in the prompt); it has "
            f"{sorted(row)}"
        )
    plain, parts = dict(row), {}
    for name in ("prompt", "chosen", "rejected"):
        value = row.get(name)
        if isinstance(value, list) and is_conversation(value):
            plain[name], count = _text_view(value, index, name)
            parts[name] = count
            if count and name != "prompt":
                raise DataFormatError(
                    f"row {index}, field {name!r}: holds an image part; images go in the prompt (the completion "
                    "is the model's answer, text only)"
                )
    checked = normalise_row(plain, index)  # every text check, tools parsed
    if not is_conversation(checked["prompt"]):
        return checked
    rendered = {**checked, "prompt": multimodal_messages(row["prompt"], images, index)}
    for name in ("chosen", "rejected"):
        if is_conversation(row[name]):
            rendered[name] = multimodal_messages(row[name], 0, index)
    return rendered


def check_vision_pair(row: dict[str, Any], index: int) -> None:
    """Every check of :func:`tokenize_vision_row` that needs neither the processor nor the images' pixels (a list of
    rows is checked before Arrow holds it, so each error names its row)."""
    value = next((row[name] for name in ("images", "image") if name in row), None)
    count = len(value) if isinstance(value, list | tuple) else int(value is not None)
    _rows_for_rendering({k: v for k, v in row.items() if k not in ("images", "image")}, index, count)


def image_token_span(ids: list[int], processor: Any) -> tuple[int, int] | None:
    """``(start, end)`` of the prompt's image block: from its first image token to its last, widened over the
    special tokens that wrap them (an image's start and end markers); ``None`` without image tokens."""
    tokenizer = processor.tokenizer
    image_ids = {token for token in getattr(processor, "image_token_ids", None) or () if token is not None}
    image_ids.add(getattr(processor, "image_token_id", None))
    positions = [position for position, token in enumerate(ids) if token in image_ids]
    if not positions:
        return None
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special = {*tokenizer.all_special_ids, *(token for token, added_token in added.items() if added_token.special)}
    special -= {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    start, end = positions[0], positions[-1] + 1
    while start > 0 and ids[start - 1] in special:
        start -= 1
    while end < len(ids) and ids[end] in special:
        end += 1
    return start, end


def _prompt_ids(text: str, images: list[Any], index: int, processor: Any, add_bos: bool) -> list[int]:
    """The prompt's ids with each image placeholder expanded by the processor (one BOS if the tokenizer adds one)."""
    try:
        encoded = processor(text=[text], images=[images] if images else None, add_special_tokens=False)
    except ValueError as error:  # the processor's own count of placeholders against images
        raise DataFormatError(f"row {index}, field 'prompt': {error}") from None
    ids = list(encoded["input_ids"][0])
    bos_id = processor.tokenizer.bos_token_id
    if add_bos and bos_id is not None and ids[:1] != [bos_id]:
        ids = [bos_id, *ids]
    while len(ids) > 1 and bos_id is not None and ids[0] == ids[1] == bos_id:
        ids = ids[1:]
    return ids


def tokenize_vision_row(
    row: dict[str, Any], index: int, tokenizer: Any, add_bos: bool, **limits: Any
) -> dict[str, Any]:
    """One raw pair with images -> ``prompt_input_ids`` (image tokens expanded), ``chosen_input_ids``,
    ``rejected_input_ids`` and a status column; ``tokenizer`` is the processor. The images stay in their column."""
    processor = tokenizer
    images = row_images(row, index)
    rendered = _rows_for_rendering({k: v for k, v in row.items() if k not in ("images", "image")}, index, len(images))
    prompt_text, completion_texts = render(rendered, index, processor, ("chosen", "rejected"))
    full_prompt = _prompt_ids(prompt_text, images, index, processor, add_bos)
    text = processor.tokenizer
    completions = [_tokenize_completion(completion, text) for completion in completion_texts]
    prompt, (chosen, rejected), status = truncate(full_prompt, completions, **limits)
    start = len(full_prompt) - len(prompt) if limits["truncation_mode"] == "keep_end" else 0
    bos_id = text.bos_token_id
    if full_prompt[:1] == [bos_id] and prompt and prompt[0] != bos_id:
        prompt = [bos_id, *prompt[1:]]  # keep_end cut the BOS off: put it back, over the first kept token
        start += 1
    span = image_token_span(full_prompt, processor)
    if chosen == rejected:  # identical, or they differed only past the cut
        status = DROPPED_IDENTICAL
    elif status != DROPPED_NO_ROOM and span is not None and (span[0] < start or span[1] > start + len(prompt)):
        status = DROPPED_IMAGE_CUT
    return {
        "prompt_input_ids": prompt,
        "chosen_input_ids": chosen,
        "rejected_input_ids": rejected,
        STATUS_COLUMN: status,
    }
