"""Small encoded test images."""

from __future__ import annotations

import io

from PIL import Image


def solid_png(rgb: tuple[int, int, int], size: int = 48) -> bytes:
    """Returns a PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buffer, format="PNG")
    return buffer.getvalue()
