"""The toy's domain: three colours, and an upload read whole at 32 px, for any disease asked."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from servicekit.classifier.domain import ImageDomain
from servicekit.errors import InvalidImage
from servicekit.images import ImageLimits

LABELS = ("red", "green", "blue")
INPUT_SIZE = 32


def preprocess(image: Image.Image, input_size: int) -> np.ndarray:
    """Returns the image squashed to (size, size, 3) float32 in [0, 1]: colour is all it reads."""
    rgb = image.convert("RGB").resize((input_size, input_size))
    return np.asarray(rgb, dtype=np.float32) / 255.0


class ToyDomain(ImageDomain):
    """Stands in for any image service: it answers every disease and reads any image Pillow does."""

    def check_disease(self, disease: str) -> None:
        """Accepts every disease: the gateway tests route several names to one toy."""

    def prepare(self, data: bytes, limits: ImageLimits, input_size: int) -> np.ndarray:
        """Returns the model input of one upload, without servicekit's format and size checks."""
        if not data:
            raise InvalidImage("the image is empty", reason="IMAGE_EMPTY")
        try:
            with Image.open(io.BytesIO(data)) as opened:
                return preprocess(opened, input_size)
        except (UnidentifiedImageError, OSError):
            raise InvalidImage(
                "the file is not a readable image", reason="IMAGE_UNREADABLE"
            ) from None


TOY = ToyDomain(disease="toy", labels=LABELS, preprocess=preprocess, input_size=INPUT_SIZE)
