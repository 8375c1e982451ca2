"""Opens a series (zip or folder) into a checked, anatomically ordered index, then loads its planes.

Slices are paired across phases by file name, as the upload layout promises. The
`pre` phase is ordered anatomically (position along the slice normal, InstanceNumber
as fallback) and that order applies to every phase; each pass is ordered on its own
too and must agree, since equal names that show different anatomy would pair the
wrong slices silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mri_service import domain
from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import Source, open_source, show
from mri_service.ingest.dicom import SliceHeader, decode_slice, read_header
from mri_service.ingest.layout import Layout, plan_layout
from mri_service.ingest.limits import IngestLimits

# Direction cosines written as decimal strings differ in their last digits.
_ORIENTATION_TOLERANCE = 1e-3
DEFAULT_LIMITS = IngestLimits()


@dataclass(frozen=True)
class PhaseIndex:
    """One phase's entries in anatomical order and its slice size."""

    phase: str
    entries: tuple[str, ...]  # entry paths inside the source, slice 0 first
    rows: int
    columns: int


@dataclass(frozen=True)
class SeriesIndex:
    """A validated series: where each slice of each phase is, in anatomical order.

    Holds no pixel data and no open file: `load_planes` reopens the source, which
    must outlive the index (the spooled upload's block, for the service).
    """

    source: Path
    limits: IngestLimits
    phases: tuple[PhaseIndex, ...]  # in domain.PHASES order
    slice_count: int
    ordered_by: str  # "position" or "instance_number", as the pre phase was ordered

    def phase(self, name: str) -> PhaseIndex:
        """Returns the index of one phase by name."""
        for phase in self.phases:
            if phase.phase == name:
                return phase
        raise KeyError(name)


def open_series(source: Path, limits: IngestLimits) -> SeriesIndex:
    """Returns the checked index of a series zip or folder, refusing anything malformed.

    Every entry is read once, with its bytes counted against the caps, and its DICOM
    header checked; pixels are not decoded here (`load_planes` does).

    Raises:
        SeriesRejected: the message names the offending entry.
    """
    with open_source(source, limits) as reader:
        layout = plan_layout(reader.entries(), limits)
        reader.check_declared([e for files in layout.phases.values() for e in files.values()])
        headers = {
            phase: {
                name: read_header(e.name, reader.read(e.name), limits) for name, e in files.items()
            }
            for phase, files in layout.phases.items()
        }
    names = list(layout.phases[domain.PRE])
    reference = [names[i] for i in _phase_order(layout, domain.PRE, headers[domain.PRE])]
    phases: list[PhaseIndex] = []
    for phase in domain.PHASES:
        if phase != domain.PRE:
            order = [names[i] for i in _phase_order(layout, phase, headers[phase])]
            _check_same_order(layout, phase, order, reference)
        rows, columns = _phase_size(layout, phase, headers[phase])
        entries = tuple(layout.phases[phase][name].name for name in reference)
        phases.append(PhaseIndex(phase, entries, rows, columns))
    pre = headers[domain.PRE].values()
    ordered_by = "position" if all(h.position is not None for h in pre) else "instance_number"
    return SeriesIndex(source, limits, tuple(phases), layout.slice_count, ordered_by)


def _phase_size(layout: Layout, phase: str, headers: dict[str, SliceHeader]) -> tuple[int, int]:
    first = next(iter(headers.values()))
    for name, header in headers.items():
        if (header.rows, header.columns) != (first.rows, first.columns):
            raise SeriesRejected(
                f"entry {show(layout.folder(phase) + name)} is {header.rows}x{header.columns} "
                f"pixels but the other slices of {show(layout.folder(phase))} are "
                f"{first.rows}x{first.columns}; all slices of a phase must be the same size",
                reason="SERIES_MIXED_SIZES",
            )
    return first.rows, first.columns


def _phase_order(layout: Layout, phase: str, headers: dict[str, SliceHeader]) -> list[int]:
    """Returns indices into the phase's sorted names, in anatomical order."""
    names = list(headers)
    items = list(headers.values())
    positions = [h.position for h in items]
    if all(p is not None for p in positions):
        first = items[0].orientation
        for name, header in headers.items():
            assert first is not None and header.orientation is not None
            if not np.allclose(header.orientation, first, atol=_ORIENTATION_TOLERANCE):
                raise SeriesRejected(
                    f"entry {show(layout.folder(phase) + name)} is oriented differently from "
                    f"the other slices of {show(layout.folder(phase))}; a phase must be one "
                    "stack of parallel slices",
                    reason="SERIES_ORDER",
                )
    try:
        return domain.slice_order(positions, [h.instance_number for h in items])
    except ValueError:
        lacking = next(
            (
                n
                for n, h in zip(names, items, strict=True)
                if h.position is None and h.instance_number is None
            ),
            next(n for n, h in zip(names, items, strict=True) if h.instance_number is None),
        )
        raise SeriesRejected(
            f"entry {show(layout.folder(phase) + lacking)} lacks InstanceNumber and not every "
            f"slice of {show(layout.folder(phase))} has ImagePositionPatient with "
            "ImageOrientationPatient, so the slice order cannot be known; export the series "
            "with its position tags",
            reason="SERIES_ORDER",
        ) from None


def _check_same_order(layout: Layout, phase: str, order: list[str], reference: list[str]) -> None:
    for index, (name, expected) in enumerate(zip(order, reference, strict=True)):
        if name != expected:
            raise SeriesRejected(
                f"entry {show(layout.folder(phase) + name)} lies at slice {index} of "
                f"{show(layout.folder(phase))} but its namesake in "
                f"{show(layout.folder(domain.PRE))} does not; files of the same name must "
                "show the same slice in every phase",
                reason="SERIES_ORDER",
            )


def load_planes(
    index: SeriesIndex,
    input_size: int,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Returns phase -> float32 (slice_count, input_size, input_size) in anatomical order.

    Decodes one file at a time, applies rescale slope and intercept and
    `domain.preprocess_slice`, so at most one full-size slice is held at once; only
    the model-sized planes accumulate.

    Args:
        index: from `open_series`; its source must still exist.
        input_size: side of the model's input planes.
        on_progress: called with (slices done, total) after each slice of each phase.

    Raises:
        SeriesRejected: a file's pixel data does not decode; the message names it.
    """
    if input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    total = len(index.phases) * index.slice_count
    planes: dict[str, np.ndarray] = {}
    done = 0
    with open_source(index.source, index.limits) as reader:
        for phase in index.phases:
            stack = np.empty((index.slice_count, input_size, input_size), dtype=np.float32)
            for position, name in enumerate(phase.entries):
                stack[position] = _load_plane(reader, phase, name, input_size)
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
            planes[phase.phase] = stack
    return planes


def _load_plane(reader: Source, phase: PhaseIndex, name: str, input_size: int) -> np.ndarray:
    pixels = decode_slice(name, reader.read(name))
    if pixels.shape != (phase.rows, phase.columns):
        raise SeriesRejected(
            f"the pixel data of entry {show(name)} is {pixels.shape[0]}x{pixels.shape[1]} "
            f"but its header declared {phase.rows}x{phase.columns}; export the series again",
            reason="SERIES_UNDECODABLE",
        )
    return domain.preprocess_slice(pixels, input_size)


def load_series(
    source: Path, input_size: int, limits: IngestLimits = DEFAULT_LIMITS
) -> dict[str, np.ndarray]:
    """Returns the planes of a series zip or folder: `open_series` then `load_planes`."""
    return load_planes(open_series(source, limits), input_size)
