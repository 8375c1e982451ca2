"""Validates and decodes uploaded images before any model work: JPEG and PNG only."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from servicekit.errors import InvalidImage

ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG"}
ALLOWED_TEXT = "JPEG or PNG"


@dataclass(frozen=True)
class ImageLimits:
    """Largest upload accepted, in bytes and in pixels."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000


def _megabytes(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MB"


def decode_image(data: bytes, limits: ImageLimits, *, min_side: int | None = None) -> Image.Image:
    """Returns the upload as an RGB image, upright per its EXIF orientation.

    Every check runs before the pixels are decoded, except truncation, which only a
    full decode reveals. Raises InvalidImage with a reason and a message a person
    understands; the message never echoes the upload's content.

    With `min_side`, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as both
    sides keep at least `min_side` pixels: a model that reads 96 px does not need a
    phone photo's 12 megapixels, and the reduced decode is several times cheaper.
    """
    if not data:
        raise InvalidImage("the image is empty", reason="IMAGE_EMPTY")
    if len(data) > limits.max_bytes:
        raise InvalidImage(
            f"the image is {_megabytes(len(data))}; the limit is {_megabytes(limits.max_bytes)}",
            reason="IMAGE_TOO_LARGE",
        )
    with warnings.catch_warnings():
        # Pillow only warns about huge images; the explicit pixel cap below decides.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            # Pillow refuses on its own above twice its warning size, from the header.
            raise InvalidImage(
                f"the image has too many pixels; the limit is "
                f"{limits.max_pixels / 1e6:.0f} megapixels",
                reason="IMAGE_TOO_MANY_PIXELS",
            ) from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise InvalidImage(
                f"the file is not a readable image; send {ALLOWED_TEXT}",
                reason="IMAGE_UNREADABLE",
            ) from None
        if image.format not in ALLOWED_FORMATS:
            raise InvalidImage(
                f"{image.format or 'this'} images are not accepted; send {ALLOWED_TEXT}",
                reason="IMAGE_TYPE_NOT_ALLOWED",
            )
        width, height = image.size
        if width * height > limits.max_pixels:
            raise InvalidImage(
                f"the image is {width}x{height} pixels; the limit is "
                f"{limits.max_pixels / 1e6:.0f} megapixels",
                reason="IMAGE_TOO_MANY_PIXELS",
            )
        if width < 1 or height < 1:
            raise InvalidImage("the image has no pixels", reason="IMAGE_UNREADABLE")
        if min_side is not None and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise InvalidImage(
                "the image is truncated or corrupt; upload it again", reason="IMAGE_TRUNCATED"
            ) from None
    ImageOps.exif_transpose(image, in_place=True)
    return image if image.mode == "RGB" else image.convert("RGB")
