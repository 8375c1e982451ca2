"""Orders each phase's slices by geometry and checks that the four phases describe one volume.

Slices are ordered by ImagePositionPatient projected on the normal of
ImageOrientationPatient (InstanceNumber only where a phase has no geometry) and paired
across phases by that order. The phases must agree on Rows and Columns, PixelSpacing,
orientation, FrameOfReferenceUID and every slice's position (within POSITION_TOLERANCE_MM);
a phase that differs is refused naming the attribute and the phases. Two phases that are
the same images (shared SOPInstanceUIDs, or one series used twice) are refused too; the
pixel comparison comes after decoding (`refuse_identical_pixels`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from mri_service import domain
from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import show
from mri_service.ingest.dicom import check_image_size
from mri_service.ingest.limits import IngestLimits
from mri_service.ingest.selection import Candidate, describe
from mri_service.ingest.study import InstanceHeader, Phase

# Direction cosines written as decimal strings differ in their last digits.
ORIENTATION_TOLERANCE = 1e-3
# Positions of the same slice in two phases of one acquisition: the scanner writes the
# same numbers; a tenth of a millimetre allows for rounding in re-exported headers.
POSITION_TOLERANCE_MM = 0.1
SPACING_TOLERANCE = 1e-3  # relative


def _refuse(message: str, reason: str) -> SeriesRejected:
    return SeriesRejected(message, reason=reason)


def _phase_label(name: str, candidate: Candidate) -> str:
    where = describe(candidate.number, candidate.description)
    if candidate.temporal_position is not None:
        where += f", temporal position {candidate.temporal_position}"
    return f"the {name} phase ({where})"


def order_phases(
    candidates: Sequence[Candidate], limits: IngestLimits
) -> tuple[tuple[Phase, ...], str]:
    """Returns the phases (PHASES order) with slices in anatomical order, and the order's key.

    Raises:
        SeriesRejected: a phase cannot be ordered, or the phases do not describe one volume.
    """
    labels = [_phase_label(n, c) for n, c in zip(domain.PHASES, candidates, strict=True)]
    _refuse_same_images(candidates, labels)
    phases: list[Phase] = []
    by_position = all(
        h.position is not None and h.orientation is not None for c in candidates for h in c.images
    )
    for name, candidate, label in zip(domain.PHASES, candidates, labels, strict=True):
        slices = _ordered(candidate.images, label, by_position, limits)
        _check_count(slices, label, limits)
        phases.append(
            Phase(
                name,
                candidate.series_uid,
                candidate.description,
                candidate.number,
                candidate.temporal_position,
                slices,
            )
        )
    reference = phases[0]
    for phase, label in zip(phases[1:], labels[1:], strict=True):
        _check_same_volume(reference, labels[0], phase, label)
    return tuple(phases), "position" if by_position else "instance_number"


def _refuse_same_images(candidates: Sequence[Candidate], labels: Sequence[str]) -> None:
    _refuse_shared(
        ((h.sop_instance_uid, i) for i, c in enumerate(candidates) for h in c.images),
        labels,
        "images (they share SOPInstanceUIDs)",
    )
    _refuse_shared(
        # Phases of one multiphase series share its SeriesInstanceUID by design.
        ((c.series_uid, i) for i, c in enumerate(candidates) if c.temporal_position is None),
        labels,
        "series (one SeriesInstanceUID)",
    )


def _refuse_shared(keyed: Iterable[tuple[str, int]], labels: Sequence[str], what: str) -> None:
    """Refuses the first key that two phases (by index) share; `what` says what they share."""
    seen: dict[str, int] = {}
    for key, index in keyed:
        other = seen.setdefault(key, index)
        if other != index:
            raise _refuse(
                f"{labels[index]} and {labels[other]} are the same {what}; "
                "each phase must be its own acquisition",
                "SERIES_DUPLICATE_PHASE",
            )


def _ordered(
    images: Sequence[InstanceHeader], label: str, by_position: bool, limits: IngestLimits
) -> tuple[InstanceHeader, ...]:
    for header in images:
        check_image_size(header.entry, header.rows, header.columns, limits)
    first = images[0]
    for header in images:
        if (header.rows, header.columns) != (first.rows, first.columns):
            raise _refuse(
                f"entry {show(header.entry)} is {header.rows}x{header.columns} pixels but the "
                f"other slices of {label} are {first.rows}x{first.columns}; all slices of a "
                "phase must be the same size",
                "SERIES_MIXED_SIZES",
            )
    if by_position:
        for header in images:
            if not np.allclose(
                _orientation(header), _orientation(first), atol=ORIENTATION_TOLERANCE
            ):
                raise _refuse(
                    f"entry {show(header.entry)} is oriented differently from the other slices "
                    f"of {label}; a phase must be one stack of parallel slices",
                    "SERIES_ORDER",
                )
        along = [_along(first, h) for h in images]
        order = sorted(range(len(images)), key=lambda i: along[i])
        for a, b in itertools.pairwise(order):
            if abs(along[b] - along[a]) < POSITION_TOLERANCE_MM / 10:
                raise _refuse(
                    f"entries {show(images[a].entry)} and {show(images[b].entry)} of {label} "
                    "lie at the same position; a phase must hold each slice once",
                    "SERIES_ORDER",
                )
        return tuple(images[i] for i in order)
    numbers = [h.instance_number for h in images]
    if any(n is None for n in numbers):
        lacking = next(h for h in images if h.instance_number is None)
        raise _refuse(
            f"entry {show(lacking.entry)} lacks InstanceNumber and not every slice has "
            "ImagePositionPatient with ImageOrientationPatient, so the slice order cannot be "
            "known; export the series with its position tags",
            "SERIES_ORDER",
        )
    return tuple(sorted(images, key=lambda h: h.instance_number or 0))


def _along(reference: InstanceHeader, header: InstanceHeader) -> float:
    if header.position is None:
        raise ValueError("ordering by position needs every slice's ImagePositionPatient")
    return domain.position_along_normal(_orientation(reference), header.position)


def _orientation(header: InstanceHeader) -> tuple[float, ...]:
    # Ordering by position is chosen only when every slice has both tags; this keeps a
    # caller that skipped that choice from computing with None.
    if header.orientation is None:
        raise ValueError("ordering by position needs every slice's ImageOrientationPatient")
    return header.orientation


def _check_count(slices: Sequence[InstanceHeader], label: str, limits: IngestLimits) -> None:
    if not limits.min_slices <= len(slices) <= limits.max_slices:
        raise _refuse(
            f"{label} holds {len(slices)} slices; a series needs between "
            f"{limits.min_slices} and {limits.max_slices} slices per phase",
            "SERIES_SLICE_COUNT",
        )


def _check_same_volume(reference: Phase, ref_label: str, phase: Phase, label: str) -> None:
    if len(phase.slices) != len(reference.slices):
        raise _refuse(
            f"{label} holds {len(phase.slices)} slices but {ref_label} holds "
            f"{len(reference.slices)}; every phase must cover the same slices",
            "SERIES_MISMATCHED_PHASES",
        )
    a, b = reference.slices[0], phase.slices[0]

    def differ(attribute: str) -> SeriesRejected:
        return _refuse(
            f"{label} differs from {ref_label} in {attribute}; the four phases must be one "
            "acquisition of the same volume",
            "SERIES_PHASE_GEOMETRY",
        )

    if (a.rows, a.columns) != (b.rows, b.columns):
        raise differ(f"Rows and Columns ({b.rows}x{b.columns} against {a.rows}x{a.columns})")
    if (a.pixel_spacing is None) != (b.pixel_spacing is None) or (
        a.pixel_spacing is not None
        and b.pixel_spacing is not None
        and not np.allclose(a.pixel_spacing, b.pixel_spacing, rtol=SPACING_TOLERANCE, atol=0)
    ):
        raise differ("PixelSpacing")
    if (a.orientation is None) != (b.orientation is None) or (
        a.orientation is not None
        and b.orientation is not None
        and not np.allclose(a.orientation, b.orientation, atol=ORIENTATION_TOLERANCE)
    ):
        raise differ("ImageOrientationPatient")
    if (
        a.frame_of_reference_uid
        and b.frame_of_reference_uid
        and (a.frame_of_reference_uid != b.frame_of_reference_uid)
    ):
        raise differ("FrameOfReferenceUID")
    for index, (x, y) in enumerate(zip(reference.slices, phase.slices, strict=True)):
        if x.position is None or y.position is None:
            continue
        distance = float(np.linalg.norm(np.subtract(x.position, y.position)))
        if distance > POSITION_TOLERANCE_MM:
            raise differ(
                f"ImagePositionPatient: slice {index} lies {distance:.2f} mm away from the "
                f"same slice of the other phase (tolerance {POSITION_TOLERANCE_MM} mm)"
            )


def refuse_identical_pixels(digests: Sequence[Sequence[int]], phases: Sequence[Phase]) -> None:
    """Refuses two phases whose every slice holds the same stored pixels.

    Args:
        digests: per phase, each slice's pixel digest in anatomical order.
        phases: the phases, in the same order.
    """
    seen: dict[tuple[int, ...], int] = {}
    for index, phase_digests in enumerate(digests):
        other = seen.setdefault(tuple(phase_digests), index)
        if other != index:
            phase = phases[index]
            raise _refuse(
                f"the {phase.name} phase ({describe(phase.number, phase.description)}) holds "
                f"exactly the pixels of the {phases[other].name} phase; each phase must be its "
                "own acquisition",
                "SERIES_DUPLICATE_PHASE",
            )
