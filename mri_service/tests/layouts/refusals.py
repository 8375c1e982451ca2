"""Studies with exactly one thing wrong, which ingestion must refuse."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
)

from mri_service.domain import PHASES
from mri_service.tests.layouts.base import (
    _MR_ONLY,
    DEFAULT_FAULT_PHASE,
    DUKE,
    DUKE_COLLECTION,
    DUKE_PATIENT,
    OTHER_PATIENT,
    RESAMPLE_FACTOR,
    SLICE_SHIFT_MM,
    SPACING_FACTOR,
    TILT_DEGREES,
    Fault,
    Patient,
    Phases,
    Source,
)
from mri_service.tests.layouts.multiphase import (
    _iso,
)
from mri_service.tests.layouts.tags import (
    _normal,
    _protocol_series,
    _renew,
    _resample,
    _set_date,
    _set_sop,
    _uid,
    all_datasets,
    apply_patient,
    breastwise_entries,
    load_phases,
    write_zip,
)
from mri_service.tests.layouts.tcia import (
    _deidentified,
    _tcia_entries,
)


def _previous(phase: str) -> str:
    index = PHASES.index(phase)
    return PHASES[index - 1] if index > 0 else PHASES[1]


def _apply_fault(phases: Phases, fault: Fault, phase: str) -> Phases:
    """Returns phases with fault in phase (TWO_STUDIES is handled by the caller)."""
    if fault is Fault.DUPLICATE_SERIES:
        return {name: copy.deepcopy(phases[phase]) for name in phases}
    if fault is Fault.THREE_PHASES:
        del phases[phase]
        return phases
    change = _FAULTS.get(fault)  # TWO_STUDIES changes nothing here
    if change is not None:
        change(phases, phase, list(phases[phase].values()))
    return phases


def _retagged_copy(phases: Phases, phase: str, hit: list[Dataset]) -> None:
    donor = list(phases[_previous(phase)].values())
    for ds, other in zip(hit, donor, strict=True):
        ds.PixelData = other.PixelData
    _renew(hit, "retagged copy")


def _other_patient(phases: Phases, phase: str, hit: list[Dataset]) -> None:
    apply_patient(hit, OTHER_PATIENT)
    _renew(hit, "other patient", study=True, frame=True)
    for ds in hit:
        ds.StudyID = "7"


def _ct_modality(phases: Phases, phase: str, hit: list[Dataset]) -> None:
    for ds in hit:
        ds.Modality = "CT"
        _set_sop(ds, ds.SOPInstanceUID, CTImageStorage)
        for keyword in _MR_ONLY:
            if keyword in ds:
                delattr(ds, keyword)
        ds.KVP = 120
        ds.RescaleType = "HU"


def _resampled(phases: Phases, phase: str, hit: list[Dataset]) -> None:
    for ds in hit:
        rows = round(int(ds.Rows) * RESAMPLE_FACTOR)
        _resample(ds, rows, round(int(ds.Columns) * RESAMPLE_FACTOR))


def _pixel_spacing(phases: Phases, phase: str, hit: list[Dataset]) -> None:
    for ds in hit:
        ds.PixelSpacing = [round(float(v) * SPACING_FACTOR, 6) for v in ds.PixelSpacing]


def _orientation(phases: Phases, phase: str, hit: list[Dataset]) -> None:
    angle = math.radians(TILT_DEGREES)
    for ds in hit:
        column = np.asarray(ds.ImageOrientationPatient[3:], dtype=np.float64)
        tilted = math.cos(angle) * column + math.sin(angle) * _normal(ds)
        row = [float(v) for v in ds.ImageOrientationPatient[:3]]
        ds.ImageOrientationPatient = [round(v, 6) for v in (*row, *tilted.tolist())]


def _slice_positions(phases: Phases, phase: str, hit: list[Dataset]) -> None:
    for ds in hit:
        moved = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
        moved += SLICE_SHIFT_MM * _normal(ds)
        ds.ImagePositionPatient = [round(float(v), 4) for v in moved]
        if "SliceLocation" in ds:
            ds.SliceLocation = round(float(ds.SliceLocation) + SLICE_SHIFT_MM, 4)


def _frame_of_reference(phases: Phases, phase: str, hit: list[Dataset]) -> None:
    for ds in hit:
        ds.FrameOfReferenceUID = _uid(ds.FrameOfReferenceUID, "own frame", phase)


# How each fault that re-tags or re-pixels the hit phase's datasets does it.
_FAULTS: dict[Fault, Callable[[Phases, str, list[Dataset]], None]] = {
    Fault.RETAGGED_COPY: _retagged_copy,
    Fault.OTHER_PATIENT: _other_patient,
    Fault.CT_MODALITY: _ct_modality,
    Fault.RESAMPLED: _resampled,
    Fault.PIXEL_SPACING: _pixel_spacing,
    Fault.ORIENTATION: _orientation,
    Fault.SLICE_POSITIONS: _slice_positions,
    Fault.FRAME_OF_REFERENCE: _frame_of_reference,
}


def _second_study(phases: Phases) -> Phases:
    """Returns a copy of the study as a second study: new UIDs, StudyID 2."""
    second = copy.deepcopy(phases)
    _renew(all_datasets(second), "second study", study=True, frame=True)
    for ds in all_datasets(second):
        ds.StudyID = "2"
    return second


def _a_year_later(datasets: Iterable[Dataset]) -> None:
    """Moves every date of the images one year on."""
    for ds in datasets:
        when = date.fromisoformat(_iso(str(ds.StudyDate)))
        try:
            later = when.replace(year=when.year + 1)
        except ValueError:  # 29 February
            later = when + timedelta(days=365)
        _set_date(ds, f"{later:%Y%m%d}")


def write_refusal_zip(
    source: Source,
    zip_path: Path,
    fault: Fault,
    *,
    layout: Literal["breastwise", "tcia"] = "breastwise",
    phase: str | None = None,
    patient: Patient | None = None,
    wrap_folder: str = "series",
) -> Path:
    """Writes the study with exactly one thing wrong (see Fault) that ingestion must refuse.

    layout="breastwise": WRAP/PHASE/NAME as the phantom writes it (TWO_STUDIES: two wraps,
    WRAP-1 and WRAP-2); layout="tcia": as write_tcia_zip (TWO_STUDIES: two study folders
    of one subject, OTHER_PATIENT: the foreign pass under its own subject folder, as the
    retriever files it). The fault is applied before the layout's re-tagging, which only
    sets descriptions, numbers, dates and times per phase, never UIDs.

    Args:
        phase: the phase the fault hits; DEFAULT_FAULT_PHASE[fault] when None.
        patient: the study's patient (default: the phantom's, or DUKE_PATIENT for tcia).
    """
    phases = load_phases(source)
    chosen = patient or (DUKE_PATIENT if layout == "tcia" else None)
    if chosen is not None:
        apply_patient(all_datasets(phases), chosen)
    hit = phase or DEFAULT_FAULT_PHASE[fault]
    if hit not in PHASES:
        raise ValueError(f"unknown phase {hit!r}")
    studies = (
        [phases, _second_study(phases)]
        if fault is Fault.TWO_STUDIES
        else [_apply_fault(phases, fault, hit)]
    )
    if layout == "breastwise":
        if len(studies) == 2:
            _a_year_later(all_datasets(studies[1]))
        entries = [
            entry
            for number, study in enumerate(studies, start=1)
            for entry in breastwise_entries(
                study, wrap_folder if len(studies) == 1 else f"{wrap_folder}-{number}"
            )
        ]
        return write_zip(zip_path, entries)
    series = [s for study in studies for s in _protocol_series(study, DUKE)]
    if len(studies) == 2:
        _a_year_later(ds for s in series[len(series) // 2 :] for ds in s)
    _deidentified(series)
    entries = _tcia_entries(
        series, collection=DUKE_COLLECTION, manifest_folder=None, windows_locations=True
    )
    return write_zip(zip_path, entries)
