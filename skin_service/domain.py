"""Pure skin-lesion logic shared by training and serving: labels, preprocessing, ranking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Order of the model's outputs; the model card repeats it and serving checks they agree.
LABELS: tuple[str, ...] = ("melanoma", "common_nevus", "atypical_nevus")
DEFAULT_INPUT_SIZE = 96


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


@dataclass(frozen=True)
class Ranked:
    """Class probabilities of one image, highest first."""

    scores: tuple[tuple[str, float], ...]

    @property
    def top_label(self) -> str:
        """Returns the most probable label."""
        return self.scores[0][0]

    @property
    def top_score(self) -> float:
        """Returns the probability of the most probable label."""
        return self.scores[0][1]


def rank(probabilities: np.ndarray, labels: tuple[str, ...]) -> Ranked:
    """Returns the labels with their probabilities, highest first (ties keep label order)."""
    if probabilities.shape != (len(labels),):
        raise ValueError(f"expected {len(labels)} probabilities, got shape {probabilities.shape}")
    order = sorted(range(len(labels)), key=lambda i: -float(probabilities[i]))
    return Ranked(tuple((labels[i], float(probabilities[i])) for i in order))
