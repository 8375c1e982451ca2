"""A classifier's domain: its disease, its labels and how an upload becomes one model input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from servicekit.backend import ModelInfo
from servicekit.classifier.errors import ModelMismatch
from servicekit.errors import UnknownDisease
from servicekit.images import ImageLimits, decode_image

# One upright RGB image and the model's input side -> one model input (float32).
Preprocess = Callable[[Image.Image, int], np.ndarray]


def decoded_side(input_size: int) -> int:
    """Returns the fewest pixels per side an upload is decoded at before preprocessing.

    The model input itself: a JPEG scaled down while decoding is averaged in the DCT
    domain, which is already an antialiasing filter, and measured accuracy on phone-size
    JPEGs was the same as with a full decode at a third of the cost.
    """
    return input_size


def centre_square(
    image: Image.Image, input_size: int, *, channels_first: bool = False
) -> np.ndarray:
    """Returns the largest centred square of image, resized with antialiasing, in [0, 1].

    float32 (size, size, 3), or (3, size, size) with channels_first (torch's layout).
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    resized = square.resize((input_size, input_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)) if channels_first else pixels


@dataclass(frozen=True)
class ImageDomain:
    """What one classifier service knows of its images, free of any model or transport.

    Like KServe's Model without the model: `prepare` is its preprocess (bytes -> one
    model input), the backend its load and predict, and servicekit.classifier ranks the
    scores (postprocess). Training calls `to_input` too, so the two never drift apart.
    A subclass may override `prepare` or `check_disease` (the toy service does).
    """

    disease: str  # the name the gateway routes, carried by every answer
    labels: tuple[str, ...]  # the order of the model's outputs; every model card repeats it
    # An image to one model input; None: centre_square in the channels_first layout.
    preprocess: Preprocess | None = None
    input_size: int = 64  # the model input's side that training uses unless told otherwise
    subject: str = "an image"  # what is classified, for the model's description
    channels_first: bool = False  # one input is (C, S, S), as torch reads it; else (S, S, C)
    channels: int = 3

    def input_shape(self, input_size: int) -> tuple[int, int, int]:
        """Returns the shape of one model input."""
        if self.channels_first:
            return (self.channels, input_size, input_size)
        return (input_size, input_size, self.channels)

    def blank(self, input_size: int) -> np.ndarray:
        """Returns an all-black model input, for the warm-up inference."""
        return np.zeros(self.input_shape(input_size), dtype=np.float32)

    def to_input(self, image: Image.Image, input_size: int) -> np.ndarray:
        """Returns the model input of one upright RGB image, as serving and training read it."""
        if self.preprocess is not None:
            return self.preprocess(image, input_size)
        return centre_square(image, input_size, channels_first=self.channels_first)

    def prepare(self, data: bytes, limits: ImageLimits, input_size: int) -> np.ndarray:
        """Returns the model input of one upload; InvalidImage when it cannot be one."""
        image = decode_image(data, limits, min_side=decoded_side(input_size))
        return self.to_input(image, input_size)

    def check_disease(self, disease: str) -> None:
        """Accepts an empty disease (a direct call) or this one; UnknownDisease otherwise."""
        if disease not in ("", self.disease):
            raise UnknownDisease(f"this service diagnoses {self.disease!r}, not {disease!r}")

    def check_model(self, info: ModelInfo) -> None:
        """Raises ModelMismatch unless the model's labels are this domain's, in order."""
        if info.labels != self.labels:
            raise ModelMismatch(
                f"the model's labels {list(info.labels)} are not {list(self.labels)}"
            )
