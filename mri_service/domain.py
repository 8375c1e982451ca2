"""Pure breast-MRI logic shared by training and serving: phases, slice preprocessing, inputs."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

# The four acquisitions of a series, as folders of the uploaded zip (BreastWise's layout).
PRE = "pre"
PASSES: tuple[str, ...] = ("1st_pass", "2nd_pass", "3rd_pass")
PHASES: tuple[str, ...] = (PRE, *PASSES)

# The two models: `single` reads the fat-saturated pre-contrast slice as one channel,
# `scantype` the three post-contrast passes of the same slice as three channels.
SINGLE = "single"
SCANTYPE = "scantype"
MODEL_NAMES: tuple[str, ...] = (SINGLE, SCANTYPE)
MODEL_CHANNELS: dict[str, int] = {SINGLE: 1, SCANTYPE: len(PASSES)}
MODEL_PHASES: dict[str, tuple[str, ...]] = {SINGLE: (PRE,), SCANTYPE: PASSES}

DEFAULT_INPUT_SIZE = 128


def normalise_slice(pixels: np.ndarray) -> np.ndarray:
    """Returns one slice min-max scaled to float32 [0, 255], as BreastWise normalises.

    Each slice on its own scale: MRI intensities have no absolute unit, so the same
    tissue differs between scanners and even between slices. A constant slice (no
    signal) becomes all zeros rather than a division by zero.
    """
    values = pixels.astype(np.float32, copy=False)
    low = float(values.min())
    span = float(values.max()) - low
    if span <= 0.0 or not np.isfinite(span):
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) * (255.0 / span)).astype(np.float32, copy=False)


def resize_slice(slice_: np.ndarray, input_size: int) -> np.ndarray:
    """Returns a 2-D float32 slice resized to input_size x input_size with antialiasing.

    MRI slices are square or nearly so; a non-square slice is stretched rather than
    cropped, because a lesion may sit anywhere in the field of view.
    """
    if slice_.shape == (input_size, input_size):
        return slice_.astype(np.float32, copy=False)
    image = Image.fromarray(slice_.astype(np.float32, copy=False), mode="F")
    resized = image.resize((input_size, input_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.float32)


def preprocess_slice(pixels: np.ndarray, input_size: int) -> np.ndarray:
    """Returns the model-ready plane of one slice: float32 (size, size) in [0, 255].

    `pixels` are the slice's stored values with rescale slope and intercept already
    applied. Normalising before resizing keeps the BreastWise order of operations;
    the resize then only averages values already on the common scale. Training and
    serving both call this function, so they can never drift apart.
    """
    if pixels.ndim != 2:
        raise ValueError(f"a slice must be 2-D, got shape {pixels.shape}")
    plane: np.ndarray = np.clip(resize_slice(normalise_slice(pixels), input_size), 0.0, 255.0)
    return plane


def model_inputs(planes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns each model's batch from per-phase stacks of preprocessed planes.

    Args:
        planes: phase name -> float32 (slices, size, size), as `preprocess_slice` makes.

    Returns:
        model name -> float32 (slices, channels, size, size), the layout both backends take.
    """
    return {
        name: np.stack([planes[phase] for phase in phases], axis=1)
        for name, phases in MODEL_PHASES.items()
    }


def slice_order(
    positions: Sequence[float | None], instance_numbers: Sequence[int | None]
) -> list[int]:
    """Returns file indices in anatomical order.

    Ordered by position along the slice normal when every file has one, else by
    InstanceNumber when every file has one; never by file name alone, which says
    nothing about anatomy. Ties keep their given order (a stable sort).

    Raises:
        ValueError: neither ordering key is present on every file, or the lengths differ.
    """
    if len(positions) != len(instance_numbers):
        raise ValueError("positions and instance numbers differ in length")
    indices = list(range(len(positions)))
    if all(p is not None for p in positions):
        return sorted(indices, key=lambda i: float(positions[i]))  # type: ignore[arg-type]
    if all(n is not None for n in instance_numbers):
        return sorted(indices, key=lambda i: int(instance_numbers[i]))  # type: ignore[arg-type]
    raise ValueError("slices carry neither ImagePositionPatient nor InstanceNumber")


def position_along_normal(
    image_orientation: Sequence[float], image_position: Sequence[float]
) -> float:
    """Returns a slice's position along its normal, from DICOM orientation and position.

    The normal is the cross product of the row and column direction cosines, so the
    order holds for axial, sagittal, coronal and oblique acquisitions alike.
    """
    row = np.asarray(image_orientation[:3], dtype=np.float64)
    column = np.asarray(image_orientation[3:6], dtype=np.float64)
    normal = np.cross(row, column)
    return float(np.dot(normal, np.asarray(image_position, dtype=np.float64)))


def plane_png(plane: np.ndarray) -> bytes:
    """Returns a preprocessed plane (float32 in [0, 255]) as a greyscale PNG, for previews."""
    pixels = np.clip(np.rint(plane), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
