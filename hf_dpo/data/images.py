"""The images of a vision-language preference row: where they are (TRL's ``images`` list or single ``image``), how
each is read (a PIL image, a file path, encoded bytes, or the ``{"bytes", "path"}`` dict an Arrow ``Image`` column
stores), and what identifies them (the bytes hashed into the reference cache's key).

    images = row_images(row, index)          # [PIL.Image, ...], each readable, or a DataFormatError naming the row

An image that cannot be read fails here, at preparation, with the row, the field and the reason, not deep inside a
collator during training.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

from hf_dpo.data.columns import IMAGE_COLUMNS
from hf_dpo.data.errors import DataFormatError


def image_column(columns: list[str] | None) -> str | None:
    """The image column among ``columns`` (TRL's names: ``images``, a list per row, or ``image``, one per row)."""
    found = [name for name in IMAGE_COLUMNS if name in (columns or ())]
    if len(found) > 1:
        raise DataFormatError(
            f"the dataset has both {found[0]!r} and {found[1]!r} columns; keep one (a list of images per row in "
            "'images', or one image per row in 'image')"
        )
    return found[0] if found else None


def _pil() -> Any:
    from PIL import Image  # pillow: the vision extra (transformers' image processors read PIL images)

    return Image


def load_image(value: Any, where: str) -> Any:
    """A PIL image from any accepted form, fully read (so a truncated file fails now); ``where`` names the row and
    field in the error."""
    image_module = _pil()
    if isinstance(value, image_module.Image):
        image = value
    else:
        if isinstance(value, dict) and ("bytes" in value or "path" in value):  # an Arrow Image column's storage
            value = value.get("bytes") or value.get("path")
        try:
            if isinstance(value, bytes | bytearray | memoryview):
                image = image_module.open(io.BytesIO(bytes(value)))
            elif isinstance(value, str | os.PathLike):
                image = image_module.open(os.fspath(value))
            else:
                raise DataFormatError(
                    f"{where}: expected an image (a PIL image, a file path or encoded bytes), got "
                    f"{type(value).__name__} {value!r:.60}"
                )
        except (OSError, ValueError) as error:  # missing file, not an image, unknown format
            raise DataFormatError(f"{where}: cannot read the image ({type(error).__name__}: {error})") from None
    try:
        image.load()
    except (OSError, ValueError) as error:  # a truncated or corrupt file opens but does not decode
        raise DataFormatError(f"{where}: cannot decode the image ({type(error).__name__}: {error})") from None
    return image


def row_images(row: dict[str, Any], index: int) -> list[Any]:
    """The row's images, read (see :func:`load_image`): its ``images`` list, or its single ``image``; none when the
    row has neither (or an empty list, or None)."""
    name = image_column([key for key in row if key in IMAGE_COLUMNS])
    if name is None or row[name] is None:
        return []
    values = row[name]
    if name == "image":
        return [load_image(values, f"row {index}, field 'image'")]
    if not isinstance(values, list | tuple):
        raise DataFormatError(
            f"row {index}, field 'images': expected a list of images, got {type(values).__name__}; one image per "
            "row goes in an 'image' column"
        )
    return [load_image(value, f"row {index}, field 'images'[{position}]") for position, value in enumerate(values)]


def image_values(values: list[Any]) -> list[Any]:
    """An image column's values (one image, or a list, per row) as Arrow should store them: an in-memory PIL image
    decoded from a lossy format (a JPEG) is handed over as plain pixels, which Arrow stores as PNG; Arrow would
    re-save it as a JPEG, changing its pixels. Files, bytes and other images are kept as they are."""

    def storable(value: Any) -> Any:
        image_module = _pil()
        if isinstance(value, image_module.Image) and value.format and not getattr(value, "filename", ""):
            return value.copy()  # a copy has no format: Arrow writes PNG (TIFF for modes PNG cannot hold)
        return value

    return [[storable(v) for v in value] if isinstance(value, list) else storable(value) for value in values]


def image_digest(values: list[Any]) -> str:
    """A hash of the images' bytes, row after row (a file named by path is read: a changed file changes the hash).

    ``values`` is an image column's stored values (one image, or a list of them, per row), as Arrow holds them."""
    digest = hashlib.sha256()
    for row, images in enumerate(values):
        digest.update(f"|row {row}|".encode())
        for image in images if isinstance(images, list) else [images]:
            digest.update(_image_bytes(image))
            digest.update(b"|")
    return digest.hexdigest()


def _image_bytes(image: Any) -> bytes:
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if image is None:
        return b"none"
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        with open(os.fspath(image), "rb") as file:
            return file.read()
    pil = _pil()
    if isinstance(image, pil.Image):  # decoded pixels: their mode, size and values
        return f"{image.mode}{image.size}".encode() + image.tobytes()
    raise TypeError(f"cannot hash an image stored as {type(image).__name__}")
