"""Procedural dermoscopy-like lesion images that follow the ABCD rule, for demo training."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from skin_service.domain import LABELS

DEFAULT_IMAGE_SIZE = 192

# Dermoscopic colours (RGB in [0, 1]) that the ABCD rule's "C" counts.
PALETTE: dict[str, tuple[float, float, float]] = {
    "light_brown": (0.66, 0.45, 0.30),
    "dark_brown": (0.33, 0.19, 0.12),
    "black": (0.09, 0.07, 0.07),
    "blue_grey": (0.40, 0.46, 0.56),
    "red": (0.72, 0.30, 0.30),
    "white": (0.86, 0.83, 0.80),
}
# Light to dark skin (roughly Fitzpatrick I to VI); each image picks a point between them.
_LIGHT_SKIN = np.array([0.93, 0.78, 0.70], dtype=np.float32)
_DARK_SKIN = np.array([0.40, 0.26, 0.18], dtype=np.float32)


# The classes lie on one continuum of ABCD severity, as in the clinic: a common nevus
# low, a melanoma high, an atypical nevus between. Every feature of a lesion departs a
# little from its severity, so lesions near a class border look like either class.
SEVERITY: dict[str, tuple[float, float]] = {
    "common_nevus": (0.0, 0.37),
    "atypical_nevus": (0.37, 0.69),
    "melanoma": (0.69, 1.0),
}
FEATURE_NOISE = 0.045


@dataclass(frozen=True)
class Features:
    """How far along each ABCD criterion one lesion is, each in [0, 1]."""

    asymmetry: float  # A: odd low harmonics of the outline
    border: float  # B: ragged, notched, unevenly blurred border
    colour: float  # C: how many colours, and which
    diameter: float  # D: size
    dots: float  # irregular dark dots and globules at the periphery

    @property
    def colour_count(self) -> int:
        """Returns how many palette colours the lesion has: 1 to 5."""
        if self.colour < SEVERITY["atypical_nevus"][0]:
            return 1
        if self.colour < SEVERITY["melanoma"][0]:
            return 2
        return 3 + int(self.colour > 0.8) + int(self.colour > 0.9)


@dataclass(frozen=True)
class GeneratedLesion:
    """One generated image with what was drawn, so tests can measure the classes."""

    image: Image.Image
    mask: np.ndarray  # bool (size, size): inside the lesion's outline
    colours: tuple[str, ...]  # palette colours painted inside the lesion
    severity: float  # where the lesion lies on the continuum, within its label's range


def generate_image(
    label: str, rng: np.random.Generator, size: int = DEFAULT_IMAGE_SIZE
) -> Image.Image:
    """Returns one RGB dermoscopy-like image of a lesion of class label."""
    return generate_lesion(label, rng, size).image


def generate_lesion(
    label: str, rng: np.random.Generator, size: int = DEFAULT_IMAGE_SIZE
) -> GeneratedLesion:
    """Returns one image of class label with its lesion mask and colours.

    Raises:
        ValueError: label is not one of domain.LABELS.
    """
    if label not in SEVERITY:
        raise ValueError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")
    severity = float(rng.uniform(*SEVERITY[label]))
    spread = np.clip(severity + rng.normal(0.0, FEATURE_NOISE, 5), 0.0, 1.0)
    features = Features(*(float(value) for value in spread))
    scale = size / DEFAULT_IMAGE_SIZE
    tone = float(rng.uniform(0.0, 1.0))
    skin = _skin(rng, size, tone)
    alpha, inside, angle, distance = _outline(rng, size, features, scale)
    colours = _choose_colours(rng, features.colour_count)
    pigment = _pigment(rng, size, colours, features, angle, distance)
    pigment = _globules(rng, pigment, features, inside, angle, distance)
    # Pigment shows darker on darker skin, as melanin adds up: a lesion stays darker than
    # the skin around it whatever the tone.
    pigment *= np.float32(1.0 - 0.55 * tone)
    opacity = np.float32(rng.uniform(0.8, 0.95))
    rgb = skin * (1.0 - opacity * alpha[..., None]) + pigment * (opacity * alpha[..., None])
    rgb = _hairs(rng, rgb, scale)
    rgb = _lighting(rng, rgb)
    pixels = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return GeneratedLesion(Image.fromarray(pixels, "RGB"), inside, colours, severity)


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Returns a smooth random field in about [0, 1]: a coarse grid upsampled bicubically."""
    coarse = rng.random((cells, cells), dtype=np.float32)
    field = Image.fromarray(coarse, "F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(field, dtype=np.float32)


def _skin(rng: np.random.Generator, size: int, tone: float) -> np.ndarray:
    base = _LIGHT_SKIN + (_DARK_SKIN - _LIGHT_SKIN) * tone
    base = base * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    blotches = _smooth_field(rng, size, 5) - 0.5
    redness = _smooth_field(rng, size, 4) - 0.5
    pores = _smooth_field(rng, size, max(size // 4, 2)) - 0.5
    grain = rng.normal(0.0, 0.012, (size, size, 1)).astype(np.float32)
    skin = base * (1.0 + 0.10 * blotches[..., None] + 0.06 * pores[..., None] + grain)
    # Erythema: some areas a little redder, whatever the class.
    skin = skin + redness[..., None] * np.array([0.05, -0.02, -0.02], dtype=np.float32)
    return skin.astype(np.float32)


def _outline(
    rng: np.random.Generator, size: int, features: Features, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns the lesion's soft alpha, hard mask, and each pixel's angle and relative distance.

    The outline is a circle whose radius varies with the angle: odd low harmonics make
    it asymmetric, many high harmonics make its border ragged.
    """
    centre = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - np.float32(centre[0]), yy - np.float32(centre[1])
    # An ellipse is still symmetric; it keeps round nevi from all looking alike.
    tilt = rng.uniform(0, math.pi)
    stretch = np.float32(rng.uniform(1.0, 1.25))
    u = dx * np.float32(math.cos(tilt)) + dy * np.float32(math.sin(tilt))
    v = -dx * np.float32(math.sin(tilt)) + dy * np.float32(math.cos(tilt))
    angle = np.arctan2(v * stretch, u / stretch)
    distance = np.hypot(u / stretch, v * stretch)

    radius = (0.11 + 0.26 * features.diameter) * size
    # The outline is computed on a table of angles, then looked up per pixel: far cheaper
    # than evaluating every harmonic at every pixel.
    table = np.linspace(-math.pi, math.pi, 721)
    relief = np.zeros_like(table)
    asymmetry = 0.26 * features.asymmetry**1.5
    for k, weight in zip((1, 3, 2), rng.dirichlet([1.0, 1.0, 1.0]), strict=True):
        relief += asymmetry * weight * np.cos(k * table + rng.uniform(0, 2 * math.pi))
    irregularity = 0.09 * features.border**1.5
    harmonics = np.arange(4, 17)
    # A 1/k spectrum gives a ragged, coastline-like border rather than a star.
    amplitudes = rng.normal(0.0, 1.0, harmonics.size) / harmonics
    amplitudes *= irregularity / np.sqrt(np.sum(amplitudes**2) / 2 + 1e-12)
    phases = rng.uniform(0, 2 * math.pi, harmonics.size)
    relief += np.cos(np.outer(table, harmonics) + phases) @ amplitudes
    # Notches: the border's sudden indentations, deeper for the more irregular classes.
    for _ in range(int(rng.integers(0, 4)) if irregularity > 0.03 else 0):
        where = rng.uniform(-math.pi, math.pi)
        gap = np.angle(np.exp(1j * (table - where)))
        relief -= rng.uniform(1.0, 2.5) * irregularity * np.exp(-((gap / 0.12) ** 2))
    relief[-1] = relief[0]
    lookup = np.interp(angle.ravel(), table, relief).reshape(angle.shape).astype(np.float32)
    edge_radius = np.float32(radius) * np.maximum(1.0 + lookup, np.float32(0.35))

    # A melanoma's border is sharp in places and fades in others; a nevus's is even.
    blur_side = np.float32(rng.uniform(0, 2 * math.pi))
    uneven = np.float32(3.5 * features.border) * (1 + np.cos(angle - blur_side))
    edge = np.float32(scale) * (np.float32(1.5) + uneven)
    alpha = np.clip((edge_radius - distance) / edge + 0.5, 0.0, 1.0)
    inside = distance < edge_radius
    return alpha.astype(np.float32), inside, angle, distance / edge_radius


def _choose_colours(rng: np.random.Generator, count: int) -> tuple[str, ...]:
    if count == 1:
        return (str(rng.choice(["light_brown", "dark_brown"])),)
    # Browns first, then the colours that alarm: black, blue-grey, red, white (regression).
    extra = rng.choice(["black", "blue_grey", "red", "white"], size=count - 2, replace=False)
    if count > 2 and "white" in extra and len(extra) == 1:
        # White alone is rare; a melanoma's third colour is mostly black, blue-grey or red.
        extra = rng.choice(["black", "blue_grey", "red"], size=1)
    return ("light_brown", "dark_brown", *(str(name) for name in extra))


def _pigment(
    rng: np.random.Generator,
    size: int,
    colours: tuple[str, ...],
    features: Features,
    angle: np.ndarray,
    distance: np.ndarray,
) -> np.ndarray:
    """Returns the lesion's colour at every pixel (only the lesion's area will show)."""
    palette = [np.array(PALETTE[name], dtype=np.float32) for name in colours]
    tint = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    # Coarse mottling plus a fine granular texture, both stronger as colour varies more.
    mottle = (_smooth_field(rng, size, 12) - 0.5) + 0.6 * (_smooth_field(rng, size, 48) - 0.5)
    mottle = np.float32(0.04 + 0.2 * features.colour) * mottle[..., None]
    if len(palette) == 1:
        # One colour, a little darker towards the centre, symmetrically.
        shade = 1.0 - 0.12 * np.clip(1.0 - distance, 0.0, 1.0)
        pigment = palette[0] * shade[..., None]
    elif len(palette) == 2:
        # A darker patch inside a lighter rim, further off centre the more asymmetric.
        offset = 0.05 + 0.45 * features.asymmetry
        towards = rng.uniform(0, 2 * math.pi)
        px = distance * np.cos(angle) - offset * math.cos(towards)
        py = distance * np.sin(angle) - offset * math.sin(towards)
        wobble = 0.25 * (_smooth_field(rng, size, 5) - 0.5)
        # A logistic step written with tanh, which cannot overflow.
        core = 0.5 - 0.5 * np.tanh((np.hypot(px, py) + wobble - rng.uniform(0.4, 0.6)) / 0.12)
        pigment = palette[0] + (palette[1] - palette[0]) * core[..., None]
    else:
        # Patches of several colours, each where its own smooth random field wins; the
        # browns cover most of the lesion, the other colours come as patches within it.
        fields = np.stack([_smooth_field(rng, size, int(rng.integers(3, 6))) for _ in palette])
        bias = np.array([0.15, 0.2] + [0.0] * (len(palette) - 2), dtype=np.float32)
        share = np.exp((fields + bias[:, None, None]) / np.float32(rng.uniform(0.03, 0.07)))
        share /= share.sum(axis=0, keepdims=True)
        pigment = np.tensordot(share.transpose(1, 2, 0), np.stack(palette), axes=1)
    return np.asarray(pigment * (1.0 + mottle) * tint, dtype=np.float32)


def _globules(
    rng: np.random.Generator,
    pigment: np.ndarray,
    features: Features,
    inside: np.ndarray,
    angle: np.ndarray,
    distance: np.ndarray,
) -> np.ndarray:
    """Adds irregular dark dots clustered on one side of the lesion's periphery."""
    count = int(max(0.0, features.dots - 0.55) * 30)
    size = pigment.shape[0]
    side = np.float32(rng.uniform(0, 2 * math.pi))
    candidates = np.flatnonzero(inside & (distance > 0.5) & (np.cos(angle - side) > 0.3))
    if count == 0 or candidates.size == 0:
        return pigment
    dark = np.array(PALETTE["black"], dtype=np.float32)
    for index in rng.choice(candidates, size=min(count, candidates.size), replace=False):
        cy, cx = divmod(int(index), size)
        radius = rng.uniform(1.0, 3.0) * size / DEFAULT_IMAGE_SIZE
        reach = math.ceil(3 * radius)
        top, left = max(cy - reach, 0), max(cx - reach, 0)
        yy, xx = np.ogrid[top : min(cy + reach + 1, size), left : min(cx + reach + 1, size)]
        spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)).astype(np.float32)
        patch = pigment[top : top + spot.shape[0], left : left + spot.shape[1]]
        patch += (dark - patch) * (0.8 * spot[..., None])
    return pigment


def _hairs(rng: np.random.Generator, rgb: np.ndarray, scale: float) -> np.ndarray:
    """Draws a few curved hairs over the image, in any class."""
    count = int(rng.choice([0, 0, 1, 2, 3, 5, 8]))
    if count == 0:
        return rgb
    size = rgb.shape[0]
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(count):
        start = rng.uniform(-0.1, 1.1, 2) * size
        heading = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.3, 1.0) * size
        bend = rng.uniform(-0.3, 0.3) * length
        end = start + length * np.array([math.cos(heading), math.sin(heading)])
        middle = (start + end) / 2 + bend * np.array([-math.sin(heading), math.cos(heading)])
        t = np.linspace(0.0, 1.0, 24)[:, None]
        points = (1 - t) ** 2 * start + 2 * (1 - t) * t * middle + t**2 * end
        width = max(1, round(rng.uniform(1.0, 2.5) * scale))
        draw.line([tuple(p) for p in points.tolist()], fill=255, width=width)
    # A slight blur stands in for antialiasing.
    layer = layer.filter(ImageFilter.GaussianBlur(0.6 * scale))
    cover = np.asarray(layer, dtype=np.float32)[..., None] / 255.0
    colour = np.array([0.12, 0.09, 0.07], dtype=np.float32) * rng.uniform(0.6, 2.0)
    return np.asarray(rgb * (1.0 - cover) + colour * cover, dtype=np.float32)


def _lighting(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """Applies exposure, colour cast, an uneven light and the dermoscope's vignette."""
    size = rgb.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size) - np.float32(0.5)
    heading = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + rng.uniform(-0.25, 0.25) * (xx * math.cos(heading) + yy * math.sin(heading))
    gain = rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    radius = np.hypot(xx, yy)
    start = rng.uniform(0.4, 0.7)
    strength = rng.uniform(0.2, 1.0)
    fall = np.clip((radius - start) / 0.15, 0.0, 1.0)
    vignette = 1.0 - strength * fall * fall * (3 - 2 * fall)
    lit = rgb * (gradient * vignette)[..., None] * gain
    return np.asarray(lit, dtype=np.float32)


def generate_dataset(
    count_per_label: int, seed: int, size: int = DEFAULT_IMAGE_SIZE
) -> Iterator[tuple[Image.Image, str]]:
    """Yields count_per_label images of every label, interleaved label by label.

    Image i of a label depends only on (seed, label, i), so a larger count extends a
    smaller one and two seeds never share an image.
    """
    for index in range(count_per_label):
        for label_index, label in enumerate(LABELS):
            rng = np.random.default_rng([seed, label_index, index])
            yield generate_image(label, rng, size), label


def write_dataset(
    folder: Path, count_per_label: int, seed: int, size: int = DEFAULT_IMAGE_SIZE
) -> int:
    """Writes generated images as folder/LABEL/NNNN.png, the layout training reads.

    Returns how many images were written.
    """
    written = 0
    counters = dict.fromkeys(LABELS, 0)
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
    for image, label in generate_dataset(count_per_label, seed, size):
        image.save(folder / label / f"{counters[label]:04d}.png")
        counters[label] += 1
        written += 1
    return written
