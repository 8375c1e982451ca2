"""What a phantom is (PhantomSpec) and the series generated from it, with its labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from mri_service.domain import PHASES
from mri_service.phantom.anatomy import Anatomy

# Stored values are 12-bit, as most MR scanners write them.
BITS_STORED = 12
MAX_STORED = (1 << BITS_STORED) - 1
# Physical value of relative intensity 1.0; fibroglandular tissue sits near 0.42.
SIGNAL_SCALE = 1000.0
AXIAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
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


def generate_series(spec: PhantomSpec) -> PhantomSeries:
    """Returns the series that spec describes; the same spec always gives the same pixels."""
    anatomy = Anatomy(spec)
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


def case_specs(
    count: int, seed: int, *, slices: int, size: int, positive_fraction: float
) -> Iterator[PhantomSpec]:
    """Yields count specs of a data set; case i depends only on (seed, i)."""
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        case_seed = int(rng.integers(0, 2**31 - 1))
        lesion = bool(rng.random() < positive_fraction)
        yield PhantomSpec(slices=slices, size=size, lesion=lesion, seed=case_seed)
