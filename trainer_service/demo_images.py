"""Generated demo images of three visually distinct classes, for tests and demonstrations."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

DEMO_LABELS = ("circle", "square", "stripes")
_JPEG_QUALITY = 90


def demo_images(label_index: int, count: int, seed: int, size: int = 96) -> list[bytes]:
    """Returns `count` JPEG images of DEMO_LABELS[label_index], the same for the same seed.

    circle: a red disc; square: a blue square; stripes: green diagonal stripes; each at a
    random position and size on a noisy grey background, so that a model has to find the
    shape rather than read a constant image.
    """
    if not 0 <= label_index < len(DEMO_LABELS):
        raise ValueError(f"label_index must be 0 to {len(DEMO_LABELS) - 1}, got {label_index}")
    if count < 0 or size < 16:
        raise ValueError("count must be >= 0 and size >= 16")
    rng = np.random.default_rng([seed, label_index])
    return [_encode(_draw(label_index, size, rng)) for _ in range(count)]


def _background(size: int, rng: np.random.Generator) -> Image.Image:
    grey = rng.uniform(90, 170)
    pixels = grey + rng.normal(0, 18, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(channel + rng.normal(0, 20), 0, 255)) for channel in rgb)
    return r, g, b


def _draw(label_index: int, size: int, rng: np.random.Generator) -> Image.Image:
    image = _background(size, rng)
    draw = ImageDraw.Draw(image)
    extent = int(rng.uniform(0.35, 0.7) * size)
    left = int(rng.uniform(0, size - extent))
    top = int(rng.uniform(0, size - extent))
    box = (left, top, left + extent, top + extent)
    if label_index == 0:
        draw.ellipse(box, fill=_jitter((210, 40, 40), rng))
    elif label_index == 1:
        draw.rectangle(box, fill=_jitter((40, 60, 210), rng))
    else:
        colour = _jitter((40, 180, 60), rng)
        width = max(2, size // 24)
        step = width * 3
        for offset in range(-size, size, step):
            draw.line((offset, 0, offset + size, size), fill=colour, width=width)
    return image


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()
