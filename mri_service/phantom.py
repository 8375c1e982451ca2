"""Procedural breast-MRI phantom series (four fat-saturated acquisitions) written as real DICOM."""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from mri_service.domain import PHASES, PRE

# Stored values are 12-bit, as most MR scanners write them.
BITS_STORED = 12
MAX_STORED = (1 << BITS_STORED) - 1
# Physical value of relative intensity 1.0; fibroglandular tissue sits near 0.42.
SIGNAL_SCALE = 1000.0
AXIAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# Fixed, obviously synthetic identity: a phantom never looks like a real patient.
PATIENT_NAME = "PHANTOM^GENERATED"
PATIENT_ID = "PHANTOM"
STUDY_DATE = "20000101"
# Enhancement over the three passes, as a share of the peak (kinetic curve types).
CURVES: dict[str, tuple[float, float, float]] = {
    "persistent": (0.55, 0.85, 1.0),
    "plateau": (0.9, 1.0, 1.0),
    "washout": (1.0, 0.82, 0.7),
}
# Relative pre-contrast intensity of each tissue on a fat-saturated T1 image.
_FAT, _GLAND, _SKIN, _MUSCLE, _TISSUE, _LUNG, _HEART = 0.2, 0.42, 0.45, 0.33, 0.27, 0.05, 0.4
# Voxels rendered at once: bounds memory for 512 x 512 x 160 series.
_CHUNK_VOXELS = 1 << 22


@dataclass(frozen=True)
class PhantomSpec:
    """What to generate: one axial series of four acquisitions.

    The anatomy is drawn in millimetres, so the same seed gives the same breasts at any
    size or slice count; `lesion=False` with the same seed gives the same series
    without the lesion, noise included.
    """

    slices: int = 32
    size: int = 256  # rows and columns
    lesion: bool = True
    seed: int = 0
    noise: float = 0.02  # Rician noise sigma, relative to fibroglandular tissue's ~0.42
    lesion_radius_mm: tuple[float, float] = (6.0, 15.0)  # range of the ellipsoid's semi-axes
    min_lesion_area_mm2: float = 40.0  # a slice is positive from this cross-section on
    field_of_view_mm: float = 340.0
    coverage_mm: float = 128.0  # extent of the slab across all slices
    rescale_slope: float = 0.5
    rescale_intercept: float = -20.0

    def __post_init__(self) -> None:
        if self.slices < 1 or self.size < 16:
            raise ValueError("a phantom needs at least 1 slice of at least 16 x 16 pixels")
        if self.rescale_slope <= 0 or self.noise < 0:
            raise ValueError("rescale_slope must be positive and noise not negative")

    @property
    def pixel_spacing_mm(self) -> float:
        """Returns the side of one pixel."""
        return self.field_of_view_mm / self.size

    @property
    def slice_spacing_mm(self) -> float:
        """Returns the distance between slice centres (equal to the slice thickness)."""
        return self.coverage_mm / self.slices


@dataclass(frozen=True, eq=False)
class PhantomSeries:
    """One generated series: stored pixel values per phase, labels and geometry.

    Arrays are in anatomical order (ascending position along the slice normal).
    """

    phases: dict[str, np.ndarray]  # phase -> uint16 (slices, rows, cols) stored values
    rescale_slope: float
    rescale_intercept: float
    positive: tuple[bool, ...]  # per slice: True where the lesion is visible
    pixel_spacing_mm: tuple[float, float]  # (between rows, between columns)
    slice_thickness_mm: float
    spacing_between_slices_mm: float
    orientation: tuple[float, ...] = AXIAL  # ImageOrientationPatient
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ImagePositionPatient of slice 0
    lesion_mask: np.ndarray | None = None  # bool (slices, rows, cols), None without a lesion
    identity: str = ""  # seeds the UIDs, so the same spec writes the same files
    description: dict[str, str | float] = field(default_factory=dict)  # lesion kinetics, ...

    @property
    def slice_count(self) -> int:
        """Returns how many slices each phase has."""
        return len(self.positive)

    def position(self, index: int) -> tuple[float, float, float]:
        """Returns ImagePositionPatient of slice index (anatomical order)."""
        normal = np.cross(self.orientation[:3], self.orientation[3:6])
        x, y, z = np.asarray(self.origin_mm) + normal * index * self.spacing_between_slices_mm
        return (round(float(x), 4), round(float(y), 4), round(float(z), 4))

    def physical(self, phase: str) -> np.ndarray:
        """Returns float32 values with slope and intercept applied, as a DICOM reader does."""
        stored = self.phases[phase].astype(np.float32)
        return stored * np.float32(self.rescale_slope) + np.float32(self.rescale_intercept)


class _Field:
    """A smooth random 3-D field of unit variance, evaluated window by window.

    A coarse grid of Gaussian noise is interpolated with Gaussian weights, separably
    along each axis: cheap, smooth, and the same anatomy at any output resolution.
    """

    def __init__(
        self, rng: np.random.Generator, cells: tuple[int, int, int], shape: tuple[int, int, int]
    ) -> None:
        self._coarse = rng.standard_normal(cells).astype(np.float32)
        self._w = [_weights(n, c) for n, c in zip(shape, cells, strict=True)]

    def window(self, slices: slice, rows: slice, cols: slice) -> np.ndarray:
        """Returns float32 (slices, rows, cols) of the field."""
        wz, wy, wx = self._w
        cz, cy, cx = self._coarse.shape
        out = (wz[slices] @ self._coarse.reshape(cz, -1)).reshape(-1, cy, cx)
        result: np.ndarray = np.matmul(np.matmul(wy[rows], out), wx[cols].T)
        return result


def _weights(n: int, cells: int) -> np.ndarray:
    """Returns (n, cells) interpolation weights scaled so the field has unit variance."""
    fine = (np.arange(n) + 0.5) / n
    coarse = (np.arange(cells) + 0.5) / cells
    w = np.exp(-0.5 * ((fine[:, None] - coarse[None, :]) * cells / 0.7) ** 2)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    return w.astype(np.float32)


def _soft(distance_px: np.ndarray) -> np.ndarray:
    """Returns partial-volume coverage from a signed distance inside an edge, in pixels."""
    return np.clip(distance_px + np.float32(0.5), 0.0, 1.0)


def _box(alpha: np.ndarray) -> tuple[slice, ...] | None:
    """Returns the slices of the last three axes that hold alpha's non-zero values."""
    box: list[slice] = []
    present = alpha > 0
    for axis in range(3):
        if present.shape[axis] == 1:
            box.append(slice(None))
            continue
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(present.any(axis=others))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _crop(value: np.ndarray | float, box: tuple[slice, ...]) -> np.ndarray | float:
    """Returns value within box, leaving broadcast (length-1) axes alone."""
    if not isinstance(value, np.ndarray):
        return value
    lead = (slice(None),) * (value.ndim - 3)
    index = tuple(
        slice(None) if value.shape[value.ndim - 3 + axis] == 1 else part
        for axis, part in enumerate(box)
    )
    cropped: np.ndarray = value[(*lead, *index)]
    return cropped


@dataclass(frozen=True)
class _Breast:
    centre_x: float  # fraction of the field of view
    half_width: float  # fraction
    depth: float  # fraction
    extent: float  # half of its extent along the slab, fraction of coverage


@dataclass(frozen=True)
class _Blob:
    """An ellipsoid: the lesion, or a small benign enhancing focus."""

    centre: tuple[float, float, float]  # x, y (fractions of the field), z (fraction of coverage)
    radii_mm: tuple[float, float, float]
    angle: float
    irregularity: float
    intensity: float  # pre-contrast, relative
    enhancement: float  # peak relative increase
    curve: str
    rim: bool


class _Slab:
    """Pixel coordinates of the slices [start, stop) and painting into their four phases."""

    def __init__(self, spec: PhantomSpec, start: int, stop: int) -> None:
        self.spec = spec
        self.size = spec.size
        self.slices = slice(start, stop)
        axis = (np.arange(spec.size, dtype=np.float32) + np.float32(0.5)) / np.float32(spec.size)
        self.x, self.y = axis[None, None, :], axis[None, :, None]
        z = (np.arange(start, stop, dtype=np.float32) + np.float32(0.5)) / np.float32(spec.slices)
        self.z = z[:, None, None]
        self.images = np.zeros((len(PHASES), stop - start, spec.size, spec.size), np.float32)

    def window(self, x: float, y: float, half_mm: float) -> tuple[slice, slice]:
        """Returns (rows, cols) of the in-plane square of half side half_mm around (x, y)."""
        half = half_mm / self.spec.pixel_spacing_mm + 2

        def span(centre: float) -> slice:
            low = max(int(centre * self.size - half), 0)
            return slice(low, max(min(int(centre * self.size + half) + 1, self.size), low))

        return span(y), span(x)

    def paint(
        self,
        alpha: np.ndarray,
        value: np.ndarray | float,
        rise: np.ndarray,
        rows: slice = slice(None),
        cols: slice = slice(None),
        slices: slice = slice(None),
    ) -> None:
        """Blends a tissue over what is painted, with partial volume.

        alpha, value and rise (relative enhancement per phase) cover the window
        (slices, rows, cols) of the slab; only the box where alpha is non-zero is touched.
        """
        box = _box(alpha)
        if box is None:
            return
        block = self.images[:, slices, rows, cols][(slice(None), *box)]
        block -= _crop(alpha, box) * (block - _crop(value, box) * (1 + _crop(rise, box)))


_PASSES = np.array([0.0, *CURVES["persistent"]], dtype=np.float32)[:, None, None, None]
_BLOOD = np.array([0.0, 1.3, 1.0, 0.8], dtype=np.float32)[:, None, None, None]


class _Anatomy:
    """One case's randomly drawn anatomy, rendered slab by slab."""

    def __init__(self, spec: PhantomSpec) -> None:
        self.spec = spec
        anatomy, lesion, noise = np.random.default_rng(spec.seed).spawn(3)
        shape = (spec.slices, spec.size, spec.size)

        def draw(low: float, high: float) -> float:
            return float(anatomy.uniform(low, high))

        self.chest = draw(0.47, 0.55)
        scale = draw(0.85, 1.15)
        centres = [0.5] if anatomy.random() < 0.15 else [0.5 - draw(0.21, 0.25), 0.0]
        if len(centres) == 2:
            centres[1] = 1.0 - centres[0] + draw(-0.02, 0.02)
        self.breasts = [
            _Breast(
                c, 0.2 * scale * draw(0.92, 1.08), 0.36 * scale * draw(0.9, 1.1), draw(0.55, 0.7)
            )
            for c in centres
        ]
        self.density = draw(-0.6, 0.9)  # breast density, fatty to dense
        self.bpe = draw(0.04, 0.3)  # background parenchymal enhancement
        self.coil = (draw(-0.35, 0.35), draw(0.3, 0.6))
        self.heart_z = draw(0.25, 0.45)
        self.gland = _Field(anatomy, (6, 12, 12), shape)
        self.detail = _Field(anatomy, (14, 48, 48), shape)
        self.patchy = _Field(anatomy, (6, 16, 16), shape)
        self.foci = [self._focus(anatomy) for _ in range(int(anatomy.integers(0, 4)))]
        self.gains = anatomy.uniform(0.92, 1.08, len(PHASES)).astype(np.float32)
        # Drawn whether or not the series has one, so both variants share the anatomy.
        self.lesion: _Blob | None = self._lesion(lesion)
        self.lesion_field = _Field(lesion, (16, 56, 56), shape)
        self.lesion_texture = _Field(lesion, (24, 80, 80), shape)
        if not spec.lesion:
            self.lesion = None
        self.noise = noise

    def _inside(self, rng: np.random.Generator, reach: float) -> tuple[float, float, float]:
        breast = self.breasts[int(rng.integers(len(self.breasts)))]
        rho, theta = rng.uniform(0.15, reach), rng.uniform(0.15 * math.pi, 0.85 * math.pi)
        x = breast.centre_x + rho * breast.half_width * math.cos(theta)
        y = self.chest - rho * breast.depth * math.sin(theta)
        z = 0.5 + rng.uniform(-0.5, 0.5) * breast.extent
        return float(x), float(y), float(z)

    def _focus(self, rng: np.random.Generator) -> _Blob:
        radius = float(rng.uniform(1.5, 2.5))
        return _Blob(
            self._inside(rng, 0.8), (radius,) * 3, 0.0, 0.0, _GLAND, float(rng.uniform(0.5, 1.2)),
            "persistent", False,
        )  # fmt: skip

    def _lesion(self, rng: np.random.Generator) -> _Blob:
        low, high = self.spec.lesion_radius_mm
        radii = rng.uniform(low, high, 3)
        return _Blob(
            centre=self._inside(rng, 0.65),
            radii_mm=(float(radii[0]), float(radii[1]), float(radii[2])),
            angle=float(rng.uniform(0, math.pi)),
            irregularity=float(rng.uniform(0.08, 0.3)),
            intensity=float(rng.uniform(0.5, 0.62)),
            enhancement=float(rng.uniform(0.8, 1.6)),
            curve=str(rng.choice(list(CURVES))),
            rim=bool(rng.random() < 0.3),
        )

    def render(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns float32 (4, k, rows, cols) noisy intensities and the lesion's coverage."""
        slab = _Slab(self.spec, start, stop)
        self._thorax(slab)
        rows = slice(0, min(int((self.chest + 0.04) * self.spec.size) + 1, self.spec.size))
        breast = self._breasts(slab, rows)
        for focus in self.foci:
            self._blob(slab, focus, breast, None)
        coverage = np.zeros(slab.images.shape[1:], dtype=np.float32)
        if self.lesion is not None:
            fields = (self.lesion_field, self.lesion_texture)
            self._blob(slab, self.lesion, breast, fields, coverage)
        x, y = slab.x, slab.y
        coil = (1 + np.float32(self.coil[0]) * (x - 0.5)) * (
            1 - np.float32(self.coil[1]) * np.clip(y - np.float32(0.2), 0, None)
        )
        images = slab.images
        images *= coil * self.gains[:, None, None, None]
        sigma = np.float32(self.spec.noise)
        # Magnitude images: noise over air is Rayleigh, over tissue about Gaussian.
        images += sigma * self.noise.standard_normal(images.shape, dtype=np.float32)
        np.square(images, out=images)
        imaginary = self.noise.standard_normal(images.shape, dtype=np.float32)
        imaginary *= sigma
        images += np.square(imaginary, out=imaginary)
        return np.sqrt(images, out=images), coverage

    def _thorax(self, slab: _Slab) -> None:
        """Paints the thorax behind the chest wall: tissue, pectoral muscle, lungs, heart."""
        x, y, pixel = slab.x, slab.y, np.float32(slab.size)
        ty, rx, ry = np.float32(self.chest + 0.36), np.float32(0.47), np.float32(0.38)
        thorax = np.sqrt(((x - 0.5) / rx) ** 2 + ((y - ty) / ry) ** 2)
        slab.paint(_soft((1 - thorax) * ry * pixel), _TISSUE, 0.15 * _PASSES)
        muscle = _soft((1 - thorax) * ry * pixel) * _soft((thorax - np.float32(0.86)) * ry * pixel)
        slab.paint(muscle, _MUSCLE, 0.2 * _PASSES)
        for side in (-1, 1):
            lung = np.sqrt(
                ((x - np.float32(0.5 + side * 0.2)) / np.float32(0.14)) ** 2
                + ((y - ty + np.float32(0.04)) / np.float32(0.2)) ** 2
            )
            slab.paint(_soft((1 - lung) * np.float32(0.14) * pixel), _LUNG, 0.1 * _PASSES)
        extent = np.sqrt(np.clip(1 - ((slab.z - np.float32(self.heart_z)) / 0.35) ** 2, 0, 1))
        rows, cols = slab.window(0.54, float(ty) - 0.08, 0.13 * self.spec.field_of_view_mm)
        heart = np.sqrt(
            ((x[..., cols] - np.float32(0.54)) / np.float32(0.12)) ** 2
            + ((y[:, rows] - ty + np.float32(0.08)) / np.float32(0.11)) ** 2
        )
        alpha = _soft((extent.astype(np.float32) - heart) * np.float32(0.11) * pixel)
        slab.paint(alpha, _HEART, _BLOOD, rows, cols)

    def _breasts(self, slab: _Slab, rows: slice) -> np.ndarray:
        """Paints skin, fat and glandular tissue; returns the breasts' coverage in rows."""
        x, y, z, pixel = slab.x, slab.y[:, rows], slab.z, np.float32(slab.size)
        shape = (z.shape[0], y.shape[1], x.shape[2])
        rho = np.full(shape, 10.0, dtype=np.float32)
        scale = np.full(shape, 0.1, dtype=np.float32)
        chest = np.float32(self.chest)
        for breast in self.breasts:
            extent = np.sqrt(np.clip(1 - ((z - 0.5) / np.float32(breast.extent)) ** 2, 0.05, 1))
            width = np.float32(breast.half_width) * extent
            depth = np.float32(breast.depth) * extent
            r = np.sqrt(
                ((x - np.float32(breast.centre_x)) / width) ** 2
                + (np.minimum(y - chest, 0) / depth) ** 2
            )
            r = np.where(y > chest + np.float32(0.03), np.float32(10.0), r)
            closer = r < rho
            rho = np.where(closer, r, rho)
            scale = np.where(closer, np.minimum(width, depth), scale)
        edge_px = (1 - rho) * scale * pixel
        alpha = _soft(edge_px)
        slab.paint(alpha, _SKIN, 0.15 * _PASSES, rows)
        skin_px = np.float32(2.0 / self.spec.pixel_spacing_mm)
        slab.paint(_soft(edge_px - skin_px), _FAT, 0.03 * _PASSES, rows)
        cols = slice(None)
        detail = self.detail.window(slab.slices, rows, cols)
        shape_field = self.gland.window(slab.slices, rows, cols) + np.float32(0.45) * detail
        # Glandular tissue clusters behind the nipple and fades towards the skin.
        gland = np.float32(0.5) + np.float32(0.5) * np.tanh(
            (shape_field + np.float32(2.2) * (np.float32(0.6) - rho) + np.float32(self.density))
            / np.float32(0.36)
        )
        gland *= _soft(edge_px - np.float32(0.08) * scale * pixel)
        patchy = self.patchy.window(slab.slices, rows, cols)
        bpe = np.float32(self.bpe) * np.clip(1 + np.float32(0.8) * patchy, 0, None)
        value = np.float32(_GLAND) * (1 + np.float32(0.08) * detail)
        slab.paint(gland, value, bpe * _PASSES, rows)
        return alpha

    def _blob(
        self,
        slab: _Slab,
        blob: _Blob,
        breast: np.ndarray,
        fields: tuple[_Field, _Field] | None,
        coverage: np.ndarray | None = None,
    ) -> None:
        """Paints a lesion (irregular, textured by fields) or a focus, within the breasts.

        Writes the blob's coverage into `coverage` when given.
        """
        spec = self.spec
        reach = max(blob.radii_mm) * (1 + 3 * blob.irregularity)
        centre_z = blob.centre[2] * spec.slices - 0.5
        span = reach / spec.slice_spacing_mm + 1
        first = max(int(centre_z - span) - slab.slices.start, 0)
        last = min(int(centre_z + span) + 2 - slab.slices.start, slab.z.shape[0])
        rows, cols = slab.window(blob.centre[0], blob.centre[1], reach)
        rows = slice(rows.start, min(rows.stop, breast.shape[1]))
        if first >= last or rows.start >= rows.stop or cols.start >= cols.stop:
            return
        fov = np.float32(spec.field_of_view_mm)
        dx = (slab.x[..., cols] - np.float32(blob.centre[0])) * fov
        dy = (slab.y[:, rows] - np.float32(blob.centre[1])) * fov
        dz = (slab.z[first:last] - np.float32(blob.centre[2])) * np.float32(spec.coverage_mm)
        c, s = np.float32(math.cos(blob.angle)), np.float32(math.sin(blob.angle))
        u = (dx * c + dy * s) / np.float32(blob.radii_mm[0])
        v = (dy * c - dx * s) / np.float32(blob.radii_mm[1])
        d = np.sqrt(u * u + v * v + (dz / np.float32(blob.radii_mm[2])) ** 2)
        edge_px = np.float32(min(blob.radii_mm[:2]) / spec.pixel_spacing_mm)
        slices = slice(first, last)
        surface: np.ndarray = np.ones((1, 1, 1), np.float32)
        texture: np.ndarray = np.ones((1, 1, 1), np.float32)
        if fields is not None:
            absolute = slice(slab.slices.start + first, slab.slices.start + last)
            irregular = fields[0].window(absolute, rows, cols)
            surface = 1 + np.float32(blob.irregularity) * irregular
            texture = 1 + np.float32(0.12) * fields[1].window(absolute, rows, cols)
        alpha = _soft((surface - d) * edge_px) * breast[slices, rows, cols]
        rise = np.float32(blob.enhancement) * texture
        if blob.rim:
            # Rim enhancement: the (necrotic) centre enhances far less than the border.
            rise = rise * (np.float32(0.35) + np.float32(0.9) * np.clip(d / surface, 0, 1) ** 2)
        curve = np.array([0.0, *CURVES[blob.curve]], dtype=np.float32)[:, None, None, None]
        value = np.float32(blob.intensity) * texture
        slab.paint(alpha, value, rise * curve, rows, cols, slices)
        if coverage is not None:
            coverage[slices, rows, cols] = alpha


def generate_series(spec: PhantomSpec) -> PhantomSeries:
    """Returns the series that spec describes; the same spec always gives the same pixels."""
    anatomy = _Anatomy(spec)
    shape = (spec.slices, spec.size, spec.size)
    stored = {phase: np.empty(shape, dtype=np.uint16) for phase in PHASES}
    mask = np.zeros(shape, dtype=bool) if spec.lesion else None
    chunk = max(1, _CHUNK_VOXELS // (spec.size * spec.size))
    slope, intercept = np.float32(spec.rescale_slope), np.float32(spec.rescale_intercept)
    for start in range(0, spec.slices, chunk):
        stop = min(start + chunk, spec.slices)
        images, coverage = anatomy.render(start, stop)
        values = np.rint((images * np.float32(SIGNAL_SCALE) - intercept) / slope)
        for index, phase in enumerate(PHASES):
            stored[phase][start:stop] = np.clip(values[index], 0, MAX_STORED).astype(np.uint16)
        if mask is not None:
            mask[start:stop] = coverage >= 0.5
    positive = _positive_slices(mask, spec)
    spacing = spec.pixel_spacing_mm
    half = spec.field_of_view_mm / 2
    lesion = anatomy.lesion
    return PhantomSeries(
        phases=stored,
        rescale_slope=spec.rescale_slope,
        rescale_intercept=spec.rescale_intercept,
        positive=positive,
        pixel_spacing_mm=(spacing, spacing),
        slice_thickness_mm=spec.slice_spacing_mm,
        spacing_between_slices_mm=spec.slice_spacing_mm,
        origin_mm=(-half + spacing / 2, -half + spacing / 2, -spec.coverage_mm / 2),
        lesion_mask=mask,
        identity=repr(spec),
        description={"curve": lesion.curve, "enhancement": round(lesion.enhancement, 3)}
        if lesion is not None
        else {},
    )


def _positive_slices(mask: np.ndarray | None, spec: PhantomSpec) -> tuple[bool, ...]:
    """Returns which slices show at least min_lesion_area_mm2 of lesion, as one run."""
    if mask is None:
        return (False,) * spec.slices
    area = mask.sum(axis=(1, 2)) * spec.pixel_spacing_mm**2
    hits = np.flatnonzero(area >= spec.min_lesion_area_mm2)
    positive = np.zeros(spec.slices, dtype=bool)
    if hits.size:
        # An irregular outline may dip under the threshold mid-lesion: the lesion is still
        # there, and a reader sees one contiguous finding.
        positive[hits[0] : hits[-1] + 1] = True
    return tuple(bool(p) for p in positive)


def labels_json(series: PhantomSeries) -> dict[str, list[int] | int]:
    """Returns the labels file content of a series: positive slice indices in anatomical order."""
    return {
        "positive_slices": [i for i, positive in enumerate(series.positive) if positive],
        "slice_count": series.slice_count,
    }


def file_names(count: int) -> list[str]:
    """Returns the DICOM file names of a series of count slices, equal in every phase."""
    return [f"IM{index + 1:04d}.dcm" for index in range(count)]


def dicom_files(
    series: PhantomSeries,
    *,
    shuffle_names: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
) -> Iterator[tuple[str, bytes]]:
    """Yields (PHASE/NAME, encoded DICOM file) for every slice of every phase."""
    names = file_names(series.slice_count)
    order = list(range(series.slice_count))
    if shuffle_names:
        # The same shuffle in every phase: equal names still mean the same slice.
        order = np.random.default_rng(seed).permutation(series.slice_count).tolist()
    study = generate_uid(entropy_srcs=[series.identity, "study"])
    frame = generate_uid(entropy_srcs=[series.identity, "frame"])
    for number, phase in enumerate(PHASES, start=1):
        uid = generate_uid(entropy_srcs=[series.identity, phase])
        for name, index in zip(names, order, strict=True):
            ds = _slice_dataset(series, phase, index, study, frame, uid, number)
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            _encode(ds, series.phases[phase][index], transfer_syntax)
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            yield f"{phase}/{name}", buffer.getvalue()


def _slice_dataset(
    series: PhantomSeries, phase: str, index: int, study: str, frame: str, uid: str, number: int
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series.identity, phase, str(index)])
    ds.Modality = "MR"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = uid
    ds.FrameOfReferenceUID = frame
    ds.StudyID = "1"
    ds.SeriesNumber = number
    ds.AcquisitionNumber = number
    ds.InstanceNumber = index + 1
    ds.SeriesDescription = f"phantom fat-sat T1 {phase}"
    ds.BodyPartExamined = "BREAST"
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SP", "FS"
    ds.MRAcquisitionType = "3D"
    ds.MagneticFieldStrength = 1.5
    if phase != PRE:
        ds.ContrastBolusAgent = "GADOLINIUM (PHANTOM)"
    ds.ImageOrientationPatient = [float(v) for v in series.orientation]
    ds.ImagePositionPatient = list(series.position(index))
    ds.SliceLocation = series.position(index)[2]
    ds.PixelSpacing = [round(v, 6) for v in series.pixel_spacing_mm]
    ds.SliceThickness = round(series.slice_thickness_mm, 6)
    ds.SpacingBetweenSlices = round(series.spacing_between_slices_mm, 6)
    ds.RescaleSlope = series.rescale_slope
    ds.RescaleIntercept = series.rescale_intercept
    ds.RescaleType = "US"
    return ds


def _encode(ds: Dataset, pixels: np.ndarray, transfer_syntax: str) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, BITS_STORED, BITS_STORED - 1
    ds.PixelRepresentation = 0
    data = np.ascontiguousarray(pixels, dtype="<u2")
    if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        ds.PixelData = data.tobytes()
        ds["PixelData"].VR = "OW"
        return
    # Compressed syntaxes need an encoder installed; pydicom says which one is missing.
    ds.compress(transfer_syntax, data, generate_instance_uid=False)


def write_dicom_series(
    series: PhantomSeries,
    out_dir: Path,
    *,
    shuffle_names: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
) -> None:
    """Writes out_dir/PHASE/IMnnnn.dcm for every phase, equal names across phases.

    shuffle_names: names no longer follow the anatomical order (deterministic by seed),
    so a reader must order slices by their position.
    """
    for name, payload in dicom_files(
        series, shuffle_names=shuffle_names, transfer_syntax=transfer_syntax, seed=seed
    ):
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)


def write_series_zip(
    series: PhantomSeries,
    zip_path: Path,
    *,
    wrap_folder: str | None = "series",
    shuffle_names: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
) -> Path:
    """Writes the series as the upload zip (WRAP/PHASE/IMnnnn.dcm) and returns zip_path."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{wrap_folder}/" if wrap_folder else ""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, payload in dicom_files(
            series, shuffle_names=shuffle_names, transfer_syntax=transfer_syntax, seed=seed
        ):
            # A fixed timestamp: the same series makes a byte-identical zip.
            info = zipfile.ZipInfo(prefix + name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, payload, compresslevel=1)
    return zip_path


def case_specs(
    count: int, seed: int, *, slices: int, size: int, positive_fraction: float
) -> Iterator[PhantomSpec]:
    """Yields count specs of a data set; case i depends only on (seed, i)."""
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        case_seed = int(rng.integers(0, 2**31 - 1))
        lesion = bool(rng.random() < positive_fraction)
        yield PhantomSpec(slices=slices, size=size, lesion=lesion, seed=case_seed)


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of the data set writer."""
    parser = argparse.ArgumentParser(
        prog="python -m mri_service.phantom",
        description="Writes generated breast-MRI series as DIR/case-NNNN.zip with labels in "
        "DIR/case-NNNN.json, the layout `medimg train mri --data` reads. Phantoms, not patients.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--count", type=int, default=10, metavar="N", help="cases (default: 10)")
    parser.add_argument("--slices", type=int, default=32, help="slices per series (default: 32)")
    parser.add_argument("--size", type=int, default=256, help="rows and columns (default: 256)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default: 0)")
    parser.add_argument(
        "--positive-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="share of cases with a lesion (default: 0.5)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Writes the data set argv asks for."""
    args = build_parser().parse_args(argv)
    if args.count < 1 or not 0.0 <= args.positive_fraction <= 1.0:
        print("--count must be at least 1 and --positive-fraction in [0, 1]", file=sys.stderr)
        return 2
    specs = case_specs(
        args.count,
        args.seed,
        slices=args.slices,
        size=args.size,
        positive_fraction=args.positive_fraction,
    )
    for index, spec in enumerate(specs, start=1):
        series = generate_series(spec)
        stem = args.out / f"case-{index:04d}"
        write_series_zip(series, stem.with_suffix(".zip"), wrap_folder=stem.name)
        stem.with_suffix(".json").write_text(json.dumps(labels_json(series)) + "\n")
        print(f"{stem.name}: {sum(series.positive)} of {series.slice_count} slices positive")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
