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
from mri_service.ingest.dicom import SliceHeader, read_header, read_slice
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

    Holds no pixel data and no open file.
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
    header checked; pixels are not decoded (`load_series` decodes them in its one pass).

    Raises:
        SeriesRejected: the message names the offending entry.
    """
    with open_source(source, limits) as reader:
        layout = _checked_layout(reader, limits)
        headers = {
            phase: {
                name: read_header(e.name, reader.read(e.name), limits) for name, e in files.items()
            }
            for phase, files in layout.phases.items()
        }
    return _index(source, limits, layout, headers)


def load_series(
    source: Path,
    input_size: int,
    limits: IngestLimits = DEFAULT_LIMITS,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Returns phase -> float32 (slice_count, input_size, input_size) in anatomical order.

    One pass over the series: each entry is read once (its bytes counted against the
    caps), its header checked, its pixels decoded, rescaled and reduced to the model's
    plane by `domain.preprocess_slice` before the next entry is read, so at most one
    full-size slice is held at once; only the model-sized planes accumulate. The
    checks across files (sizes within a phase, anatomical order, the same order in
    every phase) follow once every header is known, still before any model work.

    Args:
        source: a spooled zip or a folder with the upload's layout.
        input_size: side of the model's input planes.
        limits: the caps on the archive and its files.
        on_progress: called with (slices done, total) after each slice of each phase.

    Raises:
        SeriesRejected: the message names the offending entry.
    """
    if input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    planes: dict[str, np.ndarray] = {}  # entry name -> plane
    headers: dict[str, dict[str, SliceHeader]] = {}
    with open_source(source, limits) as reader:
        layout = _checked_layout(reader, limits)
        total, done = len(layout.phases) * layout.slice_count, 0
        for phase, files in layout.phases.items():
            headers[phase] = {}
            for name, entry in files.items():
                header, planes[entry.name] = read_slice(
                    entry.name, reader.read(entry.name), limits, input_size
                )
                headers[phase][name] = header
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
    index = _index(source, limits, layout, headers)
    return {
        phase.phase: np.stack([planes[name] for name in phase.entries]) for phase in index.phases
    }


def _checked_layout(reader: Source, limits: IngestLimits) -> Layout:
    layout = plan_layout(reader.entries(), limits)
    reader.check_declared([e for files in layout.phases.values() for e in files.values()])
    return layout


def _index(
    source: Path,
    limits: IngestLimits,
    layout: Layout,
    headers: dict[str, dict[str, SliceHeader]],
) -> SeriesIndex:
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
