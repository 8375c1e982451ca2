"""Slice thumbnails of a stored series: the `pre` phase, as the MRI service's ingest loads it."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from mri_service import domain
from mri_service.errors import SeriesRejected
from mri_service.ingest import load_series

logger = logging.getLogger(__name__)

# Side of each thumbnail, in pixels: the demo models' own input size.
THUMBNAIL_PX = 128


def render_thumbnails(*, zip_path: Path, size: int = THUMBNAIL_PX) -> list[bytes]:
    """Returns one greyscale PNG per slice of the `pre` phase, in anatomical order.

    `load_series` checks the zip exactly as the MRI service does (the same caps, the same
    refusals) and returns each slice already normalised to [0, 255] at `size` pixels.

    Raises:
        SeriesRejected: the zip is not a series the service would accept.
    """
    planes = load_series(zip_path, size)[domain.PRE]
    return [_png(plane) for plane in planes]


def _png(plane: np.ndarray) -> bytes:
    pixels = np.clip(np.rint(plane), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


__all__ = ["THUMBNAIL_PX", "SeriesRejected", "render_thumbnails"]
