"""The phantom's anatomy: breasts, chest wall, vessels and a lesion, drawn in millimetres."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mri_service.domain import PHASES

if TYPE_CHECKING:
    from mri_service.phantom.series import PhantomSpec

# Enhancement over the three passes, as a share of the peak (kinetic curve types).
CURVES: dict[str, tuple[float, float, float]] = {
    "persistent": (0.55, 0.85, 1.0),
    "plateau": (0.9, 1.0, 1.0),
    "washout": (1.0, 0.82, 0.7),
}
# Relative pre-contrast intensity of each tissue on a fat-saturated T1 image.
_FAT, _GLAND, _SKIN, _MUSCLE, _TISSUE, _LUNG, _HEART = 0.2, 0.42, 0.45, 0.33, 0.27, 0.05, 0.4


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


class Anatomy:
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
