"""Pure skin-lesion logic shared by training and serving: labels, preprocessing, ranking."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Ranking and the decode size are the same for every classifier; re-exported as this
# domain's vocabulary.
from servicekit.classification import Ranked, rank
from servicekit.classifier.domain import ImageDomain, centre_square, decoded_side

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "LABELS",
    "SKIN",
    "Ranked",
    "decoded_side",
    "preprocess",
    "rank",
]

# Order of the model's outputs; the model card repeats it and serving checks they agree.
LABELS: tuple[str, ...] = ("melanoma", "common_nevus", "atypical_nevus")
DEFAULT_INPUT_SIZE = 96


def preprocess(image: Image.Image, input_size: int) -> np.ndarray:
    """Returns the model input for one upright RGB image: float32 (size, size, 3) in [0, 1].

    The largest centred square is kept (dermoscopy frames the lesion in the middle),
    then resized with antialiasing. Training and serving both call this function, so
    they can never drift apart.
    """
    return centre_square(image, input_size)


SKIN = ImageDomain(
    disease="skin",
    labels=LABELS,
    preprocess=preprocess,
    input_size=DEFAULT_INPUT_SIZE,
    subject="a skin-lesion photo",
)
