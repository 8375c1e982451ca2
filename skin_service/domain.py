"""Pure skin-lesion logic shared by training and serving: labels, preprocessing, ranking."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Ranking is the same for every classifier; re-exported as this domain's vocabulary.
from servicekit.classification import Ranked, rank

__all__ = ["DEFAULT_INPUT_SIZE", "LABELS", "Ranked", "decoded_side", "preprocess", "rank"]

# Order of the model's outputs; the model card repeats it and serving checks they agree.
LABELS: tuple[str, ...] = ("melanoma", "common_nevus", "atypical_nevus")
DEFAULT_INPUT_SIZE = 96


def decoded_side(input_size: int) -> int:
    """Returns the fewest pixels per side an upload is decoded at before preprocessing.

    The model input itself: a JPEG scaled down while decoding is averaged in the DCT
    domain, which is already an antialiasing filter, and measured accuracy on phone-size
    JPEGs was the same as with a full decode at a third of the cost.
    """
    return input_size


def preprocess(image: Image.Image, input_size: int) -> np.ndarray:
    """Returns the model input for one upright RGB image: float32 (size, size, 3) in [0, 1].

    The largest centred square is kept (dermoscopy frames the lesion in the middle),
    then resized with antialiasing. Training and serving both call this function, so
    they can never drift apart.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    resized = square.resize((input_size, input_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.float32) / 255.0
