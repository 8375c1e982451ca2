"""One series holding every phase, as GE and Siemens scanners write it."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset

from mri_service.domain import PASSES, PHASES, PRE
from mri_service.tests.layouts.base import (
    _CLOCK_ZERO,
    CONTENT_DELAY_S,
    DYNAMIC_OFFSETS_S,
    GE,
    GE_MULTIPHASE_DESCRIPTION,
    SIEMENS,
    SIEMENS_MULTIPHASE_DESCRIPTION,
    Patient,
    Phases,
    Source,
)
from mri_service.tests.layouts.tags import (
    _set_sop,
    _set_times,
    _study_tags,
    _uid,
    all_datasets,
    apply_patient,
    clock,
    encode,
    load_phases,
    write_zip,
)


def _merged(phases: Phases, purpose: str, series_number: int, description: str) -> Dataset:
    """Puts every phase into one series; returns the pre-contrast template of the series."""
    template = next(iter(phases[PRE].values()))
    series_uid = _uid(template.SeriesInstanceUID, purpose)
    agent = next(iter(phases[PASSES[0]].values())).get("ContrastBolusAgent", "GADOLINIUM")
    for ds in all_datasets(phases):
        _set_sop(ds, _uid(ds.SOPInstanceUID, purpose))
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = ds.ProtocolName = description
        ds.FrameOfReferenceUID = template.FrameOfReferenceUID
        ds.ContrastBolusAgent = agent  # a series attribute: the same on every image
    return template


def write_ge_multiphase_zip(
    source: Source,
    zip_path: Path,
    *,
    names: Literal["I", "Ser"] = "I",
    patient: Patient | None = None,
    folder: str | None = None,
    description: str = GE_MULTIPHASE_DESCRIPTION,
    series_number: int = 5,
    seed: int = 0,
) -> Path:
    """Writes the four phases as one GE multiphase series in one folder.

    One SeriesInstanceUID and SeriesNumber; TemporalPositionIdentifier 1..4,
    NumberOfTemporalPositions 4, TriggerTime (ms) and AcquisitionTime/ContentTime per
    DYNAMIC_OFFSETS_S, AcquisitionNumber 1, ImagesInAcquisition 4N; InstanceNumber runs
    1..4N through the phases (pre's slices first, anatomical order within a phase); new
    SOPInstanceUIDs; the same FrameOfReferenceUID and slice positions in every phase.
    Files are numbered in a shuffled order (seed): folder/I0000001.dcm ... (names="I") or
    folder/Ser5_Img001 ... (names="Ser", no extension); folder defaults to Ser<number>.
    """
    phases = load_phases(source)
    if patient is not None:
        apply_patient(all_datasets(phases), patient)
    _merged(phases, "ge multiphase", series_number, description)
    total = sum(len(files) for files in phases.values())
    images = []
    for temporal, phase in enumerate(PHASES, start=1):
        offset = DYNAMIC_OFFSETS_S[phase]
        for ds in phases[phase].values():
            images.append(ds)
            ds.InstanceNumber = len(images)
            ds.AcquisitionNumber = 1
            ds.TemporalPositionIdentifier = temporal
            ds.NumberOfTemporalPositions = len(PHASES)
            ds.TriggerTime = offset * 1000.0
            ds.ImagesInAcquisition = total
            _study_tags(ds, GE)
            _set_times(ds, offset, series_offset_s=0.0)
    folder = folder or f"Ser{series_number}"
    order = np.random.default_rng(seed).permutation(total)
    width = max(3, len(str(total)))
    entries = []
    for position, index in enumerate(order, start=1):
        name = (
            f"I{position:07d}.dcm"
            if names == "I"
            else f"Ser{series_number}_Img{position:0{width}d}"
        )
        entries.append((f"{folder}/{name}", encode(images[int(index)])))
    return write_zip(zip_path, sorted(entries))


_SIEMENS_FRACTION_S = 0.4725  # syngo writes fractional seconds
_SIEMENS_IMAGE_S = 0.0125  # ContentTime between two images of one acquisition


def _ima_token(text: str) -> str:
    """Returns text as one dot-free component of a Siemens .IMA file name."""
    cleaned = "".join(c if c.isalnum() else "_" for c in text.upper())
    return cleaned.strip("_") or "ANONYMOUS"


def _number(text: str, digits: int) -> int:
    """Returns a number of at most digits digits that depends only on text."""
    value: int = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 10**digits
    return value


def write_siemens_multiphase_zip(
    source: Source,
    zip_path: Path,
    *,
    instance_numbers: Literal["running", "per_acquisition"] = "running",
    names: Literal["ima", "dcm"] = "ima",
    patient: Patient | None = None,
    description: str = SIEMENS_MULTIPHASE_DESCRIPTION,
    series_number: int = 5,
) -> Path:
    """Writes the four phases as one Siemens series, told apart by AcquisitionNumber.

    One SeriesInstanceUID; AcquisitionNumber 1..4 with increasing AcquisitionTime and
    ContentTime (fractional seconds, as syngo writes them); no TemporalPositionIdentifier,
    NumberOfTemporalPositions or TriggerTime; SeriesTime that of the first acquisition.
    InstanceNumber runs 1..4N (instance_numbers="running") or restarts at 1 in every
    acquisition ("per_acquisition": the same InstanceNumber on four images).

    Files: STUDY_DATE/DESCRIPTION_NNNN/ then syngo's offline export names
    PATIENT.MR.STUDY.SERIES.INSTANCE.YYYY.MM.DD.HH.MM.SS.FFFFFF.NNNNNNNN.IMA (names="ima";
    the patient's name is in every file name) or Horos-style IM-NNNN-KKKK.dcm ("dcm").
    """
    phases = load_phases(source)
    if patient is not None:
        apply_patient(all_datasets(phases), patient)
    template = _merged(phases, "siemens multiphase", series_number, description)
    entries = []
    running = 0
    study = _ima_token(str(SIEMENS.study_description))
    folder = f"{study}_{template.StudyDate}/{_ima_token(description)}_{series_number:04d}"
    for acquisition, phase in enumerate(PHASES, start=1):
        for index, ds in enumerate(phases[phase].values(), start=1):
            running += 1
            ds.AcquisitionNumber = acquisition
            ds.InstanceNumber = running if instance_numbers == "running" else index
            for keyword in ("TemporalPositionIdentifier", "NumberOfTemporalPositions"):
                if keyword in ds:
                    delattr(ds, keyword)
            if "TriggerTime" in ds:
                del ds.TriggerTime
            _study_tags(ds, SIEMENS)
            # One AcquisitionTime per acquisition; each image is reconstructed a bit later.
            offset = DYNAMIC_OFFSETS_S[phase] + _SIEMENS_FRACTION_S
            _set_times(ds, offset, series_offset_s=_SIEMENS_FRACTION_S, fraction=True)
            content = offset + CONTENT_DELAY_S + index * _SIEMENS_IMAGE_S
            ds.ContentTime = clock(content, fraction=True)
            if names == "ima":
                moment = _CLOCK_ZERO + timedelta(seconds=content)
                name = ".".join(
                    (
                        _ima_token(str(ds.PatientName)),
                        "MR",
                        study,
                        f"{series_number:04d}",
                        f"{int(ds.InstanceNumber):04d}",
                        f"{date.fromisoformat(_iso(str(ds.StudyDate))):%Y.%m.%d}",
                        f"{moment:%H.%M.%S.%f}",
                        f"{_number(str(ds.SOPInstanceUID), 8):08d}",
                        "IMA",
                    )
                )
            else:
                name = f"IM-{series_number:04d}-{running:04d}.dcm"
            entries.append((f"{folder}/{name}", encode(ds)))
    return write_zip(zip_path, entries)


def _iso(value: str) -> str:
    return f"{value[0:4]}-{value[4:6]}-{value[6:8]}"
