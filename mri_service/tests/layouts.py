"""Builders that re-tag and re-package a phantom DCE series as real systems export studies."""

# Every builder starts from the phantom's BreastWise output (pre/, 1st_pass/, 2nd_pass/,
# 3rd_pass/ with equal file names, one SeriesInstanceUID per folder), reads each file back
# with pydicom, changes tags or pixels and writes the files again: nothing is written from
# nothing. Each returns the path of the zip it wrote. New UIDs are derived from the old
# ones, and zip timestamps are fixed, so the same input always gives the same zip.
#
# Layouts:
#   write_tcia_zip               NBIA Data Retriever download of Duke-Breast-Cancer-MRI
#   write_dicomdir_zip           CD export: DICOMDIR + PT000000/ST000000/SE000000/IM000000
#   write_pacs_export_zip        flat DATA/0001/IM000001 (or UID names), mixed, with clutter
#   write_ge_multiphase_zip      one GE series, phases by TemporalPositionIdentifier
#   write_siemens_multiphase_zip one Siemens series, phases by AcquisitionNumber
#   write_encoded_zip            BreastWise zip, other pixel encodings of the same meaning
#   write_refusal_zip            BreastWise or TCIA zip with exactly one thing wrong

from __future__ import annotations

import copy
import csv
import hashlib
import io
import math
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeAlias

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from mri_service.domain import PASSES, PHASES, PRE, position_along_normal
from mri_service.phantom import PhantomSeries, dicom_files

Source: TypeAlias = PhantomSeries | Path
"""A generated series, or the path of a BreastWise zip (PHASE/NAME entries, any wrap)."""
Phases: TypeAlias = dict[str, dict[str, Dataset]]
"""Phase folder -> {file name -> dataset}, each phase in anatomical order."""

FOURTH_PASS = "4th_pass"
DYNAMIC: tuple[str, ...] = (*PHASES, FOURTH_PASS)
# Seconds after the pre-contrast acquisition: the first pass after the injection delay,
# the others about 1.5 minutes apart, as a breast DCE protocol runs them.
DYNAMIC_OFFSETS_S: dict[str, float] = {
    PRE: 0.0,
    "1st_pass": 150.0,
    "2nd_pass": 240.0,
    "3rd_pass": 330.0,
    FOURTH_PASS: 420.0,
}
LOCALIZER_OFFSET_S = -540.0
T1_OFFSET_S = -300.0
STUDY_OFFSET_S = -600.0
CONTENT_DELAY_S = 25.0  # ContentTime (reconstruction) after AcquisitionTime
_CLOCK_ZERO = datetime(2000, 1, 1, 12, 0, 0)  # the phantom's 120000
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)

# The columns of the metadata.csv the NBIA Data Retriever writes beside a download.
TCIA_METADATA_COLUMNS: tuple[str, ...] = (
    "Series UID",
    "Collection",
    "3rd Party Analysis",
    "Data Description URI",
    "Subject ID",
    "Study UID",
    "Study Description",
    "Study Date",
    "Series Description",
    "Manufacturer",
    "Modality",
    "SOP Class Name",
    "SOP Class UID",
    "Number of Images",
    "File Size",
    "File Location",
    "Download Timestamp",
)
DUKE_COLLECTION = "Duke-Breast-Cancer-MRI"
DUKE_DOI = "https://doi.org/10.7937/TCIA.e3sv-re93"
_DOWNLOAD_TIMESTAMP = "2024-01-15T10:30:00.123"
_LICENSE = (
    "Synthetic test download shaped like a TCIA collection: generated phantom images, "
    "no patient data.\nThe collection it imitates is published under the Creative Commons "
    "Attribution-NonCommercial 4.0 International License (CC BY-NC 4.0).\n"
)
_README = (
    "PHANTOM MEDICAL IMAGING CD\r\n\r\nThis disc holds DICOM images exported from a "
    "picture archive.\r\nOpen DICOMDIR or the DATA folder with a DICOM viewer.\r\n"
)

# MR-only attributes that a CT image does not carry.
_MR_ONLY = (
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "MagneticFieldStrength",
    "SpacingBetweenSlices",
)
SLICE_SHIFT_MM = 3.0  # Fault.SLICE_POSITIONS: not a multiple of the phantom's slice spacing
TILT_DEGREES = 20.0  # Fault.ORIENTATION: the pass is tilted about its row direction
SPACING_FACTOR = 1.25  # Fault.PIXEL_SPACING
RESAMPLE_FACTOR = 0.75  # Fault.RESAMPLED: rows and columns, with spacing kept to the FOV
T1_SCALE = 1.5  # the extra "ax t1" series has 1.5 times the rows and columns
# Encoding.RESCALED: stored' = GAIN * stored + OFFSET with slope' and intercept' below, so
# slope' * stored' + intercept' = (slope' * GAIN / slope) * value + constant.
RESCALE_GAIN = 3
RESCALE_OFFSET = 7
RESCALE_SLOPE = 1.25
RESCALE_INTERCEPT = 100.0


@dataclass(frozen=True)
class Patient:
    """Who a study belongs to: the identifying attributes a builder sets on every file."""

    name: str  # PatientName, DICOM person name (FAMILY^GIVEN)
    patient_id: str  # PatientID
    birth_date: str = ""  # PatientBirthDate, YYYYMMDD; "" writes the attribute empty
    sex: str = "F"  # PatientSex


# Distinctive strings, so a test can show that none of them ever reaches a response or log.
CANARY = Patient("CANARY^PATIENT", "CANARY-ID-4711", "19010101")
# The identity TCIA's de-identification gives Duke subject 1.
DUKE_PATIENT = Patient("Breast_MRI_001", "Breast_MRI_001")
# Fault.OTHER_PATIENT moves one pass to this patient's study.
OTHER_PATIENT = Patient("OTHER^PATIENT", "OTHER-ID-0815", "19500505")


@dataclass(frozen=True)
class Protocol:
    """How one site names and numbers a breast DCE study that exports a series per phase."""

    manufacturer: str
    study_description: str
    dynamic: Mapping[str, str]  # phase (DYNAMIC) -> SeriesDescription
    t1: str  # SeriesDescription of the non-fat-saturated T1 series
    localizer: str  # SeriesDescription of the three-plane localiser
    image_type: tuple[str, ...]
    study_date: str | None = None  # None keeps the source's StudyDate
    first_dynamic_series: int = 3  # SeriesNumber of the pre-contrast series


# The Duke-Breast-Cancer-MRI collection's descriptions (GE scanners, TCIA date-shifted to
# 1990-01-01); the localiser and the T1 series number 1 and 2, the dynamic ones 3 on.
DUKE = Protocol(
    manufacturer="GE MEDICAL SYSTEMS",
    study_description="MRI BREAST BILATERAL",
    dynamic={
        PRE: "ax dyn pre",
        "1st_pass": "ax dyn 1st pass",
        "2nd_pass": "ax dyn 2nd pass",
        "3rd_pass": "ax dyn 3rd pass",
        FOURTH_PASS: "ax dyn 4th pass",
    },
    t1="ax t1",
    localizer="3 Plane Loc",
    image_type=("ORIGINAL", "PRIMARY", "OTHER"),
    study_date="19900101",
)
# A Siemens site with "one series per measurement": the protocol name plus a phase suffix,
# as sites commonly configure it (a judgement, not a Siemens default).
SIEMENS = Protocol(
    manufacturer="SIEMENS",
    study_description="Mamma^Routine",
    dynamic={
        PRE: "t1_fl3d_tra_dynaVIEWS_spair_pre",
        "1st_pass": "t1_fl3d_tra_dynaVIEWS_spair_1st",
        "2nd_pass": "t1_fl3d_tra_dynaVIEWS_spair_2nd",
        "3rd_pass": "t1_fl3d_tra_dynaVIEWS_spair_3rd",
        FOURTH_PASS: "t1_fl3d_tra_dynaVIEWS_spair_4th",
    },
    t1="t1_fl3d_tra_nonfs",
    localizer="localizer",
    image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
    first_dynamic_series=4,
)
# The Siemens default: every measurement keeps the protocol's name, so only SeriesNumber
# and the times tell the phases apart.
SIEMENS_SAME_NAME = Protocol(
    manufacturer=SIEMENS.manufacturer,
    study_description=SIEMENS.study_description,
    dynamic=dict.fromkeys(DYNAMIC, "t1_fl3d_tra_dynaVIEWS_spair"),
    t1=SIEMENS.t1,
    localizer=SIEMENS.localizer,
    image_type=SIEMENS.image_type,
    first_dynamic_series=SIEMENS.first_dynamic_series,
)
# A GE site exporting its own study (not date-shifted), with Duke's series names.
GE = Protocol(
    manufacturer=DUKE.manufacturer,
    study_description="BREAST BILATERAL",
    dynamic=DUKE.dynamic,
    t1=DUKE.t1,
    localizer=DUKE.localizer,
    image_type=DUKE.image_type,
)
GE_MULTIPHASE_DESCRIPTION = "Ax Vibrant MultiPhase"
SIEMENS_MULTIPHASE_DESCRIPTION = "t1_fl3d_tra_dynaVIEWS_spair"


class Encoding(StrEnum):
    """A pixel encoding of write_encoded_zip; each keeps what the pixels mean.

    Value transforms (of the stored values; before any transfer syntax):
    MONOCHROME1: stored = 2**BitsStored - 1 - original, PhotometricInterpretation
        MONOCHROME1; slope and intercept kept (a reader inverts, then rescales).
    RESCALED: stored = 3 * original + 7 (BitsStored 14), RescaleSlope 1.25 and
        RescaleIntercept 100: the rescaled values become an affine function of the
        original ones with positive slope (7.5 x + 258.75 for the phantom's 0.5 and -20).
    HIGH_BITS: random non-zero values in the bits above BitsStored (the phantom's 12 of
        16: a random high nibble on every pixel), which a reader must mask off.
    SIGNED: PixelRepresentation 1, stored = value - 2**(BitsStored - 1), the intercept
        raised to match: the rescaled values are unchanged.
    Transfer syntaxes (at most one, last): IMPLICIT_VR, BIG_ENDIAN (retired but still met),
    DEFLATED, RLE, JPEG_LS and JPEG_2000 (pydicom's Dataset.compress with pylibjpeg-rle,
    pyjpegls and pylibjpeg-openjpeg), JPEG_LOSSLESS_SV1 (1.2.840.10008.1.2.4.70, encoded
    by python-gdcm; its pixel stream is put into the pydicom dataset, because GDCM's
    ImageWriter rewrites an MR image as Enhanced MR).
    """

    MONOCHROME1 = "monochrome1"
    RESCALED = "rescaled"
    HIGH_BITS = "high_bits"
    SIGNED = "signed"
    IMPLICIT_VR = "implicit_vr"
    BIG_ENDIAN = "big_endian"
    DEFLATED = "deflated"
    RLE = "rle"
    JPEG_LS = "jpeg_ls"
    JPEG_2000 = "jpeg_2000"
    JPEG_LOSSLESS_SV1 = "jpeg_lossless_sv1"


TRANSFER_SYNTAXES: dict[Encoding, UID] = {
    Encoding.IMPLICIT_VR: ImplicitVRLittleEndian,
    Encoding.BIG_ENDIAN: ExplicitVRBigEndian,
    Encoding.DEFLATED: DeflatedExplicitVRLittleEndian,
    Encoding.RLE: RLELossless,
    Encoding.JPEG_LS: JPEGLSLossless,
    Encoding.JPEG_2000: JPEG2000Lossless,
    Encoding.JPEG_LOSSLESS_SV1: JPEGLosslessSV1,
}


class Fault(StrEnum):
    """The one thing wrong in a write_refusal_zip study; `phase` is the phase it hits.

    DUPLICATE_SERIES: `phase` (default pre) copied into all four folders, UIDs and all.
    RETAGGED_COPY: `phase` (default 2nd_pass) keeps its tags but gets new series and SOP
        UIDs and the pixels of the phase before it (1st_pass; for pre, those of 1st_pass).
    OTHER_PATIENT: `phase` belongs to OTHER_PATIENT's study: new StudyInstanceUID,
        FrameOfReferenceUID, series and SOP UIDs, PatientName, PatientID, birth date.
    CT_MODALITY: `phase` says Modality CT with SOPClassUID CT Image Storage.
    RESAMPLED: `phase` has 0.75 times the rows and columns (PixelSpacing keeps the FOV).
    PIXEL_SPACING: `phase` has 1.25 times the PixelSpacing, pixels unchanged.
    ORIENTATION: `phase` is tilted 20 degrees about its row direction.
    SLICE_POSITIONS: `phase` is shifted 3 mm along the slice normal.
    FRAME_OF_REFERENCE: `phase` has its own FrameOfReferenceUID.
    THREE_PHASES: `phase` (default 3rd_pass) is missing: three dynamic phases only.
    TWO_STUDIES: the zip holds the study twice: the second a year later, with new study,
        series, SOP and frame-of-reference UIDs (`phase` is not used).
    """

    DUPLICATE_SERIES = "duplicate_series"
    RETAGGED_COPY = "retagged_copy"
    OTHER_PATIENT = "other_patient"
    CT_MODALITY = "ct_modality"
    RESAMPLED = "resampled"
    PIXEL_SPACING = "pixel_spacing"
    ORIENTATION = "orientation"
    SLICE_POSITIONS = "slice_positions"
    FRAME_OF_REFERENCE = "frame_of_reference"
    THREE_PHASES = "three_phases"
    TWO_STUDIES = "two_studies"


DEFAULT_FAULT_PHASE: dict[Fault, str] = {
    **dict.fromkeys(Fault, "2nd_pass"),
    Fault.DUPLICATE_SERIES: PRE,
    Fault.THREE_PHASES: "3rd_pass",
}


# --- reading the source and writing zips ---------------------------------------------


def load_phases(source: Source) -> Phases:
    """Returns fresh datasets of every phase of a phantom series or a BreastWise zip.

    A zip's entries are grouped by the folder holding them (pre, 1st_pass, ...), whatever
    wraps it; compressed pixel data is decompressed, so builders may edit pixels.

    Raises:
        ValueError: a phase folder is missing.
    """
    files: Iterable[tuple[str, bytes]]
    if isinstance(source, PhantomSeries):
        files = dicom_files(source)
    else:
        with zipfile.ZipFile(source) as archive:
            files = [(i.filename, archive.read(i)) for i in archive.infolist() if not i.is_dir()]
    grouped: dict[str, list[tuple[str, Dataset]]] = {}
    for path, data in files:
        parts = path.split("/")
        if len(parts) < 2 or parts[-2] not in PHASES:
            continue
        ds = pydicom.dcmread(io.BytesIO(data))
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        grouped.setdefault(parts[-2], []).append((parts[-1], ds))
    missing = [phase for phase in PHASES if phase not in grouped]
    if missing:
        raise ValueError(f"the source has no folder for {', '.join(missing)}")
    return {
        phase: dict(sorted(grouped[phase], key=lambda item: along_normal(item[1])))
        for phase in PHASES
    }


def along_normal(ds: Dataset) -> float:
    """Returns a slice's position along its normal (the anatomical sort key)."""
    return position_along_normal(ds.ImageOrientationPatient, ds.ImagePositionPatient)


def encode(ds: Dataset) -> bytes:
    """Returns a dataset as a DICOM file (preamble, meta) in its meta's transfer syntax."""
    if ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian:
        ds = _fresh(ds)  # pydicom will not turn a dataset read as little endian into big
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _fresh(ds: Dataset) -> Dataset:
    """Returns a copy of ds that remembers no original encoding."""
    fresh = Dataset()
    for element in ds:
        fresh.add(copy.deepcopy(element))
    fresh.file_meta = copy.deepcopy(ds.file_meta)
    return fresh


def write_zip(zip_path: Path, entries: Iterable[tuple[str, bytes]]) -> Path:
    """Writes entries (a name ending in / is a folder) with fixed timestamps; returns zip_path.

    Raises:
        ValueError: two entries have the same name (a builder bug, never meant).
    """
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in entries:
            if name in seen:
                raise ValueError(f"two zip entries named {name}")
            seen.add(name)
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name.endswith("/"):
                info.external_attr = (0o40755 << 16) | 0x10
            archive.writestr(info, data, compresslevel=1)
    return zip_path


def breastwise_entries(
    phases: Phases, wrap_folder: str | None = "series"
) -> list[tuple[str, bytes]]:
    """Returns the WRAP/PHASE/NAME entries of the phases, as the phantom names them."""
    prefix = f"{wrap_folder}/" if wrap_folder else ""
    return [
        (f"{prefix}{phase}/{name}", encode(ds))
        for phase, files in phases.items()
        for name, ds in files.items()
    ]


def write_breastwise_zip(
    phases: Phases, zip_path: Path, *, wrap_folder: str | None = "series"
) -> Path:
    """Writes phases in BreastWise's layout (WRAP/PHASE/NAME) and returns zip_path."""
    return write_zip(zip_path, breastwise_entries(phases, wrap_folder))


# --- tags --------------------------------------------------------------------------------


def apply_patient(datasets: Iterable[Dataset], patient: Patient) -> None:
    """Sets PatientName, PatientID, PatientBirthDate and PatientSex on every dataset."""
    for ds in datasets:
        ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        ds.PatientSex = patient.sex


def all_datasets(phases: Phases) -> Iterator[Dataset]:
    """Yields every dataset of every phase."""
    for files in phases.values():
        yield from files.values()


def _uid(*parts: object) -> UID:
    """Returns a UID that depends only on parts."""
    return generate_uid(entropy_srcs=[str(part) for part in parts])


def _set_sop(ds: Dataset, instance: str, sop_class: str | None = None) -> None:
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(instance)
    if sop_class is not None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)


def _renew(
    datasets: Iterable[Dataset], purpose: str, *, study: bool = False, frame: bool = False
) -> None:
    """Gives copies new series and SOP UIDs (and study, frame of reference) from the old."""
    for ds in datasets:
        ds.SeriesInstanceUID = _uid(ds.SeriesInstanceUID, purpose)
        _set_sop(ds, _uid(ds.SOPInstanceUID, purpose))
        if study:
            ds.StudyInstanceUID = _uid(ds.StudyInstanceUID, purpose)
        if frame:
            ds.FrameOfReferenceUID = _uid(ds.FrameOfReferenceUID, purpose)


def clock(offset_s: float, *, fraction: bool = False) -> str:
    """Returns the DICOM time (TM) offset_s seconds after the pre-contrast acquisition."""
    moment = _CLOCK_ZERO + timedelta(seconds=offset_s)
    return moment.strftime("%H%M%S.%f" if fraction else "%H%M%S")


def _set_times(
    ds: Dataset, offset_s: float, *, series_offset_s: float | None = None, fraction: bool = False
) -> None:
    """Sets the study, series, acquisition and content times and dates of one image."""
    ds.StudyTime = clock(STUDY_OFFSET_S)
    ds.SeriesTime = clock(offset_s if series_offset_s is None else series_offset_s)
    ds.AcquisitionTime = clock(offset_s, fraction=fraction)
    ds.ContentTime = clock(offset_s + CONTENT_DELAY_S, fraction=fraction)
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = ds.StudyDate


def _set_date(ds: Dataset, value: str) -> None:
    ds.StudyDate = value
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = value


def _stored(ds: Dataset) -> np.ndarray:
    """Returns the stored values of a native single-frame image (high bits masked)."""
    values: np.ndarray = ds.pixel_array
    return values


def _set_pixels(ds: Dataset, values: np.ndarray) -> None:
    """Replaces the native pixel data (16-bit little endian) and Rows/Columns."""
    dtype = "<i2" if int(ds.PixelRepresentation) == 1 else "<u2"
    ds.Rows, ds.Columns = values.shape
    ds.PixelData = np.ascontiguousarray(values, dtype=dtype).tobytes()
    ds["PixelData"].VR = "OW"


def _resize(values: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Returns a slice resampled bilinearly to rows x columns, as uint16 stored values."""
    image = Image.fromarray(values.astype(np.float32), mode="F")
    resized = np.asarray(image.resize((columns, rows), Image.Resampling.BILINEAR))
    stored: np.ndarray = np.clip(np.rint(resized), 0, 65535).astype(np.uint16)
    return stored


def _resample(ds: Dataset, rows: int, columns: int) -> None:
    """Resamples one image to rows x columns over the same field of view."""
    old_rows, old_columns = int(ds.Rows), int(ds.Columns)
    spacing = [float(v) for v in ds.PixelSpacing]
    new = [spacing[0] * old_rows / rows, spacing[1] * old_columns / columns]
    # The first pixel's centre moves with the pixel size: the field's corner stays put.
    row_cosines = np.asarray(ds.ImageOrientationPatient[:3], dtype=np.float64)
    column_cosines = np.asarray(ds.ImageOrientationPatient[3:], dtype=np.float64)
    position = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    position += (new[1] - spacing[1]) / 2 * row_cosines + (new[0] - spacing[0]) / 2 * column_cosines
    _set_pixels(ds, _resize(_stored(ds), rows, columns))
    ds.PixelSpacing = [round(v, 6) for v in new]
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]


def _normal(ds: Dataset) -> np.ndarray:
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    normal: np.ndarray = np.cross(orientation[:3], orientation[3:])
    return normal


def _retag_dynamic(phases: Phases, protocol: Protocol) -> None:
    """Gives each phase its own series of protocol: description, number, times."""
    for phase, files in phases.items():
        for ds in files.values():
            ds.SeriesDescription = ds.ProtocolName = protocol.dynamic[phase]
            ds.SeriesNumber = protocol.first_dynamic_series + DYNAMIC.index(phase)
            ds.AcquisitionNumber = 1
            _study_tags(ds, protocol)
            _set_times(ds, DYNAMIC_OFFSETS_S[phase])


def _study_tags(ds: Dataset, protocol: Protocol) -> None:
    ds.Manufacturer = protocol.manufacturer
    ds.StudyDescription = protocol.study_description
    ds.ImageType = list(protocol.image_type)
    if protocol.study_date is not None:
        ds.StudyDate = protocol.study_date


def _fourth_pass(phases: Phases) -> dict[str, Dataset]:
    """Returns a 4th pass: the 3rd pass's pixels under new UIDs (timed later on retag)."""
    files = {name: copy.deepcopy(ds) for name, ds in phases["3rd_pass"].items()}
    _renew(files.values(), FOURTH_PASS)
    return files


def _t1_series(phases: Phases, protocol: Protocol) -> list[Dataset]:
    """Returns a non-fat-saturated T1 series: every other pre slice at 1.5 x the matrix."""
    images = []
    for number, source in enumerate(list(phases[PRE].values())[::2], start=1):
        ds = copy.deepcopy(source)
        _resample(ds, round(int(ds.Rows) * T1_SCALE), round(int(ds.Columns) * T1_SCALE))
        thickness = float(ds.SliceThickness) * 2
        ds.SliceThickness = ds.SpacingBetweenSlices = round(thickness, 6)
        ds.SeriesDescription = ds.ProtocolName = protocol.t1
        ds.SeriesNumber = 2
        ds.InstanceNumber = number
        ds.AcquisitionNumber = 1
        ds.ScanOptions = ""
        _study_tags(ds, protocol)
        _set_times(ds, T1_OFFSET_S)
        images.append(ds)
    _renew(images, "t1")
    return images


def _localizer_series(phases: Phases, protocol: Protocol) -> list[Dataset]:
    """Returns a three-plane localiser: the pre volume's middle axial, sagittal, coronal."""
    slices = list(phases[PRE].values())
    volume = np.stack([_stored(ds) for ds in slices])  # (slice, row, column)
    count, rows, columns = volume.shape
    template = slices[count // 2]
    row_cosines = np.asarray(template.ImageOrientationPatient[:3], dtype=np.float64)
    column_cosines = np.asarray(template.ImageOrientationPatient[3:], dtype=np.float64)
    normal = _normal(template)
    first = np.asarray(slices[0].ImagePositionPatient, dtype=np.float64)
    row_spacing, column_spacing = (float(v) for v in template.PixelSpacing)
    slice_spacing = float(template.SpacingBetweenSlices)
    top = first + (count - 1) * slice_spacing * normal  # the image rows run down the slab
    planes = [
        # (pixels, row direction, column direction, first pixel, pixel spacing)
        (
            volume[count // 2],
            row_cosines,
            column_cosines,
            np.asarray(template.ImagePositionPatient, dtype=np.float64),
            (row_spacing, column_spacing),
        ),
        (
            volume[::-1, :, columns // 2],
            column_cosines,
            -normal,
            top + columns // 2 * column_spacing * row_cosines,
            (slice_spacing, row_spacing),
        ),
        (
            volume[::-1, rows // 2, :],
            row_cosines,
            -normal,
            top + rows // 2 * row_spacing * column_cosines,
            (slice_spacing, column_spacing),
        ),
    ]
    images = []
    for number, (pixels, along_row, along_column, position, spacing) in enumerate(planes, 1):
        ds = copy.deepcopy(template)
        _set_pixels(ds, np.ascontiguousarray(pixels))
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*along_row, *along_column)]
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.PixelSpacing = [round(v, 6) for v in spacing]
        ds.SliceThickness = 5.0
        ds.SliceLocation = round(along_normal(ds), 4)
        del ds.SpacingBetweenSlices
        ds.SeriesDescription = ds.ProtocolName = protocol.localizer
        ds.SeriesNumber = 1
        ds.InstanceNumber = number
        ds.AcquisitionNumber = 1
        ds.MRAcquisitionType = "2D"
        ds.ScanOptions = ""
        _study_tags(ds, protocol)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        _set_times(ds, LOCALIZER_OFFSET_S + 5 * number, series_offset_s=LOCALIZER_OFFSET_S)
        # Three copies of one template: each image needs a UID of its own.
        ds.SeriesInstanceUID = _uid(template.SeriesInstanceUID, "localizer")
        _set_sop(ds, _uid(template.SOPInstanceUID, "localizer", number))
        images.append(ds)
    return images


def _protocol_series(
    phases: Phases, protocol: Protocol, *, t1: bool = False, localizer: bool = False
) -> list[list[Dataset]]:
    """Returns the study as series (localiser, T1, then the dynamic phases), re-tagged."""
    extras: list[list[Dataset]] = []
    if localizer:
        extras.append(_localizer_series(phases, protocol))
    if t1:
        extras.append(_t1_series(phases, protocol))
    _retag_dynamic(phases, protocol)
    return [*extras, *(list(files.values()) for files in phases.values())]


# --- TCIA / NBIA Data Retriever ----------------------------------------------------------


def nbia_file_names(datasets: Sequence[Dataset]) -> list[str]:
    """Returns the NBIA Data Retriever's file names of one series' images, in their order.

    Since release 3.6 the retriever names a file ACQUISITION-INSTANCE.dcm: the ordinal of
    its AcquisitionNumber in the series, then of its InstanceNumber within that
    acquisition (a missing value sorts first), the instance left-padded with zeros to at
    least two digits (1-01.dcm ... 1-42.dcm, or 1-001.dcm when one holds 100 or more).
    """

    def key(ds: Dataset, keyword: str) -> tuple[int, int]:
        value = ds.get(keyword)
        return (0, 0) if value is None or value == "" else (1, int(value))

    members: dict[tuple[int, int], list[int]] = {}
    for index, ds in enumerate(datasets):
        members.setdefault(key(ds, "AcquisitionNumber"), []).append(index)
    width = max([2, *(len(str(len(group))) for group in members.values())])
    names = [""] * len(datasets)
    for acquisition, group_key in enumerate(sorted(members), start=1):
        ordered = sorted(members[group_key], key=lambda i: key(datasets[i], "InstanceNumber"))
        for instance, index in enumerate(ordered, start=1):
            names[index] = f"{acquisition}-{instance:0{width}d}.dcm"
    return names


def _path_part(text: str) -> str:
    """Returns text usable as one folder name, as the retriever cleans descriptions."""
    for character in '/\\:*?"<>|':
        text = text.replace(character, "_")
    return text.strip() or "NA"


def _last_digits(uid: str) -> str:
    """Returns the last five digits of a UID, the retriever's folder suffix."""
    return uid.replace(".", "")[-5:]


def _nbia_date(value: str) -> str:
    return f"{value[4:6]}-{value[6:8]}-{value[0:4]}" if len(value) == 8 else "NA"


def _file_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.2f} MB"
    return f"{size / 1024:.2f} KB"


def _tcia_entries(
    series: Sequence[Sequence[Dataset]],
    *,
    collection: str,
    manifest_folder: str | None,
    windows_locations: bool,
) -> list[tuple[str, bytes]]:
    """Returns the entries of an NBIA download of the series, metadata.csv and LICENSE."""
    prefix = f"{manifest_folder}/" if manifest_folder else ""
    entries: list[tuple[str, bytes]] = []
    rows: list[dict[str, str]] = []
    for datasets in series:
        first = datasets[0]
        study = "-".join(
            (
                _nbia_date(str(first.StudyDate)),
                "NA",
                _path_part(str(first.get("StudyDescription", ""))),
                _last_digits(first.StudyInstanceUID),
            )
        )
        series_folder = "-".join(
            (
                f"{float(first.SeriesNumber):.6f}",
                _path_part(str(first.get("SeriesDescription", ""))),
                _last_digits(first.SeriesInstanceUID),
            )
        )
        folder = "/".join((collection, _path_part(str(first.PatientID)), study, series_folder))
        size = 0
        for name, ds in zip(nbia_file_names(datasets), datasets, strict=True):
            data = encode(ds)
            size += len(data)
            entries.append((f"{prefix}{folder}/{name}", data))
        location = ".\\" + folder.replace("/", "\\") if windows_locations else f"./{folder}"
        rows.append(
            {
                "Series UID": first.SeriesInstanceUID,
                "Collection": collection,
                "3rd Party Analysis": "NO",
                "Data Description URI": DUKE_DOI,
                "Subject ID": str(first.PatientID),
                "Study UID": first.StudyInstanceUID,
                "Study Description": str(first.get("StudyDescription", "")),
                "Study Date": _nbia_date(str(first.StudyDate)),
                "Series Description": str(first.get("SeriesDescription", "")),
                "Manufacturer": str(first.get("Manufacturer", "")),
                "Modality": str(first.Modality),
                "SOP Class Name": UID(first.SOPClassUID).name,
                "SOP Class UID": str(first.SOPClassUID),
                "Number of Images": str(len(datasets)),
                "File Size": _file_size(size),
                "File Location": location,
                "Download Timestamp": _DOWNLOAD_TIMESTAMP,
            }
        )
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=TCIA_METADATA_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["File Location"]))
    return [
        (f"{prefix}metadata.csv", table.getvalue().encode()),
        (f"{prefix}LICENSE", _LICENSE.encode()),
        *sorted(entries),
    ]


def _deidentified(series: Iterable[Iterable[Dataset]]) -> None:
    """Marks images as TCIA's de-identification does."""
    for datasets in series:
        for ds in datasets:
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = "DCM:113100/113105/113107/113108/113109/113111"
            ds.LongitudinalTemporalInformationModified = "MODIFIED"


def write_tcia_zip(
    source: Source,
    zip_path: Path,
    *,
    patient: Patient | None = None,
    fourth_pass: bool = False,
    t1: bool = False,
    localizer: bool = False,
    collection: str = DUKE_COLLECTION,
    manifest_folder: str | None = None,
    windows_locations: bool = True,
) -> Path:
    """Writes the study as the NBIA Data Retriever downloads Duke-Breast-Cancer-MRI.

    COLLECTION/SUBJECT/01-01-1990-NA-MRI BREAST BILATERAL-NNNNN/3.000000-ax dyn pre-NNNNN/
    1-01.dcm ... (NNNNN: the last five digits of the study's and the series' UID), with
    metadata.csv (TCIA_METADATA_COLUMNS, one row per series) and LICENSE at the top, all
    under manifest_folder when given (the retriever's manifest-NNNN folder).

    The phases are series "ax dyn pre", "ax dyn 1st pass", ... numbered 3, 4, 5, 6 with
    AcquisitionTime, ContentTime and SeriesTime per DYNAMIC_OFFSETS_S, AcquisitionNumber 1
    in each; the subject is DUKE_PATIENT unless patient is given.

    Args:
        fourth_pass: adds "ax dyn 4th pass" (the 3rd pass's pixels, new UIDs, 90 s later).
        t1: adds "ax t1" (series 2): every other pre slice at 1.5 x the rows and columns.
        localizer: adds "3 Plane Loc" (series 1): axial, sagittal and coronal images.
        windows_locations: metadata.csv's File Location with backslashes, as a download
            on Windows writes it, rather than ./A/B.
    """
    phases = load_phases(source)
    apply_patient(all_datasets(phases), patient or DUKE_PATIENT)
    if fourth_pass:
        phases[FOURTH_PASS] = _fourth_pass(phases)
    series = _protocol_series(phases, DUKE, t1=t1, localizer=localizer)
    _deidentified(series)
    entries = _tcia_entries(
        series,
        collection=collection,
        manifest_folder=manifest_folder,
        windows_locations=windows_locations,
    )
    return write_zip(zip_path, entries)


# --- CD / PACS exports -------------------------------------------------------------------


def _folder_entries(root: Path, prefix: str) -> list[tuple[str, bytes]]:
    """Returns every file under root as (prefix + relative path, bytes), DICOMDIR first."""
    files = sorted(path for path in root.rglob("*") if path.is_file())
    files.sort(key=lambda path: path.name != "DICOMDIR")
    return [(prefix + path.relative_to(root).as_posix(), path.read_bytes()) for path in files]


def _write_file_set(root: Path, datasets: Sequence[Dataset], file_set_id: str) -> None:
    """Writes datasets as a File-set at root: DICOMDIR plus pydicom's PT/ST/SE/IM tree."""
    file_set = FileSet()
    file_set.ID = file_set_id
    for ds in datasets:
        file_set.add(ds)
    file_set.write(root)


def _cd_study(
    source: Source, protocol: Protocol, patient: Patient | None, t1: bool, localizer: bool
) -> list[list[Dataset]]:
    phases = load_phases(source)
    if patient is not None:
        apply_patient(all_datasets(phases), patient)
    return _protocol_series(phases, protocol, t1=t1, localizer=localizer)


def write_dicomdir_zip(
    source: Source,
    zip_path: Path,
    *,
    protocol: Protocol = SIEMENS,
    patient: Patient | None = None,
    t1: bool = False,
    localizer: bool = False,
    wrap_folder: str | None = None,
    seed: int = 0,
) -> Path:
    """Writes the study as a CD export: DICOMDIR and the File-set pydicom's FileSet writes.

    The tree is PT000000/ST000000/SE00000S/IM00000I (no extension); DICOMDIR holds PATIENT,
    STUDY, SERIES and IMAGE records. Images are added series by series in a shuffled
    order (seed), so IM000000 is not the first slice. Each phase is its own series named
    by protocol (SIEMENS: "t1_fl3d_tra_dynaVIEWS_spair_pre", "..._1st", ...;
    SIEMENS_SAME_NAME: one name for all), numbered and timed as in write_tcia_zip; the
    patient is the source's (the phantom's) unless given.
    """
    series = _cd_study(source, protocol, patient, t1, localizer)
    rng = np.random.default_rng(seed)
    ordered = [datasets[int(i)] for datasets in series for i in rng.permutation(len(datasets))]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "cd"
        _write_file_set(root, ordered, "MEDIMG_CD")
        entries = _folder_entries(root, f"{wrap_folder}/" if wrap_folder else "")
    return write_zip(zip_path, entries)


def _apple_double() -> bytes:
    """Returns an AppleDouble header, what macOS's zip puts in __MACOSX/ for each file."""
    return struct.pack(">II16sH", 0x00051607, 0x00020000, b"Mac OS X        ", 0)


def _thumbnail(ds: Dataset) -> bytes:
    """Returns an 8-bit JPEG preview of one image, as viewers burn beside the files."""
    values = _stored(ds).astype(np.float32)
    span = max(float(values.max() - values.min()), 1.0)
    pixels = ((values - values.min()) * (255.0 / span)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def write_pacs_export_zip(
    source: Source,
    zip_path: Path,
    *,
    names: Literal["numbered", "uid"] = "numbered",
    dicomdir: bool = False,
    clutter: bool = True,
    protocol: Protocol = SIEMENS,
    patient: Patient | None = None,
    t1: bool = False,
    localizer: bool = False,
    files_per_folder: int = 7,
    seed: int = 0,
) -> Path:
    """Writes the study as a PACS export to flat, meaningless folders.

    Files of all series are mixed in a shuffled order (seed) and cut into folders of
    files_per_folder: DATA/0001/IM000001, DATA/0001/IM000002, ... (names="numbered") or
    DATA/0001/<SOPInstanceUID> (names="uid"), no extension. Series are tagged as in
    write_dicomdir_zip.

    Args:
        dicomdir: adds a DICOMDIR (written by FileSet, then pointed at the flat files and
            rewritten with FileSet.write(use_existing=True)). Only with numbered names:
            a UID is no valid File ID component.
        clutter: adds what a copied CD zipped on a Mac carries: README.TXT, a JPEG
            thumbnail DATA/0001/THUMB.JPG, .DS_Store, folder entries and an AppleDouble
            __MACOSX/.../._NAME for every file.

    Raises:
        ValueError: dicomdir with UID names, or files_per_folder below 1.
    """
    if files_per_folder < 1:
        raise ValueError("files_per_folder must be at least 1")
    if dicomdir and names == "uid":
        raise ValueError("a DICOMDIR cannot reference UID file names (8 characters at most)")
    series = _cd_study(source, protocol, patient, t1, localizer)
    everything = [ds for datasets in series for ds in datasets]
    order = np.random.default_rng(seed).permutation(len(everything))
    placed: dict[str, Dataset] = {}
    for position, index in enumerate(order):
        ds = everything[int(index)]
        name = f"IM{position + 1:06d}" if names == "numbered" else str(ds.SOPInstanceUID)
        placed[f"DATA/{position // files_per_folder + 1:04d}/{name}"] = ds
    if dicomdir:
        entries = _flat_file_set(placed)
    else:
        entries = [(path, encode(ds)) for path, ds in placed.items()]
    if clutter:
        entries = _with_clutter(entries, everything[len(everything) // 2])
    return write_zip(zip_path, entries)


def _flat_file_set(placed: Mapping[str, Dataset]) -> list[tuple[str, bytes]]:
    """Returns DICOMDIR plus the files at the given paths, the DICOMDIR pointing at them."""
    where = {str(ds.SOPInstanceUID): path for path, ds in placed.items()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "cd"
        _write_file_set(root, list(placed.values()), "MEDIMG_PACS")
        dicomdir = pydicom.dcmread(root / "DICOMDIR")
        for record in dicomdir.DirectoryRecordSequence:
            if "ReferencedFileID" not in record:
                continue
            target = where[str(record.ReferencedSOPInstanceUIDInFile)]
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(root.joinpath(*record.ReferencedFileID), root / target)
            record.ReferencedFileID = target.split("/")
        for folder in root.glob("PT*"):
            shutil.rmtree(folder)
        # Loaded with file IDs pydicom would not choose, the File-set is staged for a move;
        # use_existing keeps the files where they are and rewrites DICOMDIR's offsets.
        FileSet(dicomdir).write(use_existing=True)
        return _folder_entries(root, "")


def _apple_double_name(name: str) -> str:
    """Returns where macOS's zip puts the resource fork of name: __MACOSX/FOLDER/._BASE."""
    folder, _, base = name.rpartition("/")
    return f"__MACOSX/{folder}/._{base}" if folder else f"__MACOSX/._{base}"


def _parents(name: str) -> list[str]:
    """Returns the folder entries above a zip entry: A/B/C gives A/ and A/B/."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[: depth + 1]) + "/" for depth in range(len(parts))]


def _with_clutter(entries: list[tuple[str, bytes]], sample: Dataset) -> list[tuple[str, bytes]]:
    """Returns entries with the folders, README, thumbnail and macOS litter of a copied CD."""
    folders = sorted({folder for name, _ in entries for folder in _parents(name)})
    files = [
        ("README.TXT", _README.encode("ascii")),
        (".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(2048)),
        *entries,
        ("DATA/0001/THUMB.JPG", _thumbnail(sample)),
    ]
    mac = [(_apple_double_name(name), _apple_double()) for name, _ in files]
    mac_folders = sorted({"__MACOSX/", *(f"__MACOSX/{folder}" for folder in folders)})
    return [*((folder, b"") for folder in folders), *files, *((f, b"") for f in mac_folders), *mac]


# --- single-series multiphase ------------------------------------------------------------


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


# --- pixel encodings ---------------------------------------------------------------------


def _monochrome1(ds: Dataset) -> None:
    _require_unsigned(ds, Encoding.MONOCHROME1)
    maximum = (1 << int(ds.BitsStored)) - 1
    _set_pixels(ds, (maximum - _stored(ds).astype(np.int64)).astype(np.uint16))
    ds.PhotometricInterpretation = "MONOCHROME1"


def _rescaled(ds: Dataset) -> None:
    _require_unsigned(ds, Encoding.RESCALED)
    stored = _stored(ds).astype(np.int64) * RESCALE_GAIN + RESCALE_OFFSET
    largest = ((1 << int(ds.BitsStored)) - 1) * RESCALE_GAIN + RESCALE_OFFSET
    bits = max(int(ds.BitsStored), math.ceil(math.log2(largest + 1)))
    if bits > int(ds.BitsAllocated):
        raise ValueError("rescaled values do not fit the bits allocated")
    ds.BitsStored, ds.HighBit = bits, bits - 1
    _set_pixels(ds, stored.astype(np.uint16))
    ds.RescaleSlope = RESCALE_SLOPE
    ds.RescaleIntercept = RESCALE_INTERCEPT


def _high_bits(ds: Dataset, rng: np.random.Generator) -> None:
    bits = int(ds.BitsStored)
    if bits >= int(ds.BitsAllocated):
        raise ValueError("no bits above BitsStored to fill")
    low = _stored(ds).astype(np.int64) & ((1 << bits) - 1)  # two's complement if signed
    garbage = rng.integers(1, 1 << (int(ds.BitsAllocated) - bits), size=low.shape)
    raw = (low | (garbage << bits)).astype(np.uint16)
    ds.Rows, ds.Columns = raw.shape
    ds.PixelData = raw.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"


def _signed(ds: Dataset) -> None:
    _require_unsigned(ds, Encoding.SIGNED)
    shift = 1 << (int(ds.BitsStored) - 1)
    values = _stored(ds).astype(np.int64) - shift
    ds.PixelRepresentation = 1
    _set_pixels(ds, values.astype(np.int16))
    ds.RescaleIntercept = float(ds.RescaleIntercept) + shift * float(ds.RescaleSlope)


def _require_unsigned(ds: Dataset, encoding: Encoding) -> None:
    if int(ds.PixelRepresentation) != 0:
        raise ValueError(f"{encoding} needs unsigned stored values; put it before SIGNED")


def _big_endian(ds: Dataset) -> None:
    words = np.frombuffer(ds.PixelData, dtype="<u2")
    ds.PixelData = words.astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _gdcm_jpeg_lossless(ds: Dataset) -> None:
    """Encodes the pixel data as JPEG Lossless SV1 with GDCM, the other tags untouched."""
    try:
        import gdcm  # type: ignore[import-untyped]
    except ImportError as error:  # pragma: no cover - python-gdcm is in the dev extra
        raise RuntimeError("JPEG Lossless SV1 needs python-gdcm (the dev extra)") from error
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "in.dcm", Path(scratch) / "out.dcm"
        source.write_bytes(encode(ds))
        reader = gdcm.ImageReader()
        reader.SetFileName(str(source))
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(target))
        ok = reader.Read()
        if ok:
            change.SetInput(reader.GetImage())
            ok = change.Change()
        if ok:
            writer.SetFile(reader.GetFile())
            writer.SetImage(change.GetOutput())
            ok = writer.Write()
        if not ok:
            raise RuntimeError("GDCM could not encode JPEG Lossless SV1")
        encoded = pydicom.dcmread(target)
    ds["PixelData"] = encoded["PixelData"]
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1


def _apply_transfer_syntax(ds: Dataset, encoding: Encoding) -> None:
    if encoding in (Encoding.IMPLICIT_VR, Encoding.DEFLATED):
        ds.file_meta.TransferSyntaxUID = TRANSFER_SYNTAXES[encoding]
    elif encoding is Encoding.BIG_ENDIAN:
        _big_endian(ds)
    elif encoding is Encoding.JPEG_LOSSLESS_SV1:
        _gdcm_jpeg_lossless(ds)
    else:
        ds.compress(TRANSFER_SYNTAXES[encoding], generate_instance_uid=False)


def encode_phases(phases: Phases, encodings: Sequence[Encoding], *, seed: int = 0) -> None:
    """Re-encodes every image of phases in place with encodings, applied in order.

    Raises:
        ValueError: an encoding repeats, more than one is a transfer syntax, one follows
            the transfer syntax, or a value transform needs unsigned values it lacks.
    """
    if len(set(encodings)) != len(encodings):
        raise ValueError("an encoding is given twice")
    syntaxes = [i for i, encoding in enumerate(encodings) if encoding in TRANSFER_SYNTAXES]
    if len(syntaxes) > 1 or (syntaxes and syntaxes[0] != len(encodings) - 1):
        raise ValueError("at most one transfer syntax, after the value transforms")
    rng = np.random.default_rng(seed)
    for ds in all_datasets(phases):
        for encoding in encodings:
            if encoding is Encoding.MONOCHROME1:
                _monochrome1(ds)
            elif encoding is Encoding.RESCALED:
                _rescaled(ds)
            elif encoding is Encoding.HIGH_BITS:
                _high_bits(ds, rng)
            elif encoding is Encoding.SIGNED:
                _signed(ds)
            else:
                _apply_transfer_syntax(ds, encoding)


def write_encoded_zip(
    source: Source,
    zip_path: Path,
    *encodings: Encoding,
    wrap_folder: str | None = "series",
    seed: int = 0,
) -> Path:
    """Writes the BreastWise zip again with its pixels encoded by encodings (see Encoding).

    Names, folders and every other tag stay; SOPInstanceUIDs are kept (a lossless change).
    """
    phases = load_phases(source)
    encode_phases(phases, encodings, seed=seed)
    return write_breastwise_zip(phases, zip_path, wrap_folder=wrap_folder)


# --- refusal cases -----------------------------------------------------------------------


def _previous(phase: str) -> str:
    index = PHASES.index(phase)
    return PHASES[index - 1] if index > 0 else PHASES[1]


def _apply_fault(phases: Phases, fault: Fault, phase: str) -> Phases:
    """Returns phases with fault in phase (TWO_STUDIES is handled by the caller)."""
    hit = list(phases[phase].values())
    if fault is Fault.DUPLICATE_SERIES:
        return {name: copy.deepcopy(phases[phase]) for name in phases}
    if fault is Fault.RETAGGED_COPY:
        donor = list(phases[_previous(phase)].values())
        for ds, other in zip(hit, donor, strict=True):
            ds.PixelData = other.PixelData
        _renew(hit, "retagged copy")
    elif fault is Fault.OTHER_PATIENT:
        apply_patient(hit, OTHER_PATIENT)
        _renew(hit, "other patient", study=True, frame=True)
        for ds in hit:
            ds.StudyID = "7"
    elif fault is Fault.CT_MODALITY:
        for ds in hit:
            ds.Modality = "CT"
            _set_sop(ds, ds.SOPInstanceUID, CTImageStorage)
            for keyword in _MR_ONLY:
                if keyword in ds:
                    delattr(ds, keyword)
            ds.KVP = 120
            ds.RescaleType = "HU"
    elif fault is Fault.RESAMPLED:
        for ds in hit:
            rows = round(int(ds.Rows) * RESAMPLE_FACTOR)
            _resample(ds, rows, round(int(ds.Columns) * RESAMPLE_FACTOR))
    elif fault is Fault.PIXEL_SPACING:
        for ds in hit:
            ds.PixelSpacing = [round(float(v) * SPACING_FACTOR, 6) for v in ds.PixelSpacing]
    elif fault is Fault.ORIENTATION:
        angle = math.radians(TILT_DEGREES)
        for ds in hit:
            column = np.asarray(ds.ImageOrientationPatient[3:], dtype=np.float64)
            tilted = math.cos(angle) * column + math.sin(angle) * _normal(ds)
            row = [float(v) for v in ds.ImageOrientationPatient[:3]]
            ds.ImageOrientationPatient = [round(v, 6) for v in (*row, *tilted.tolist())]
    elif fault is Fault.SLICE_POSITIONS:
        for ds in hit:
            moved = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
            moved += SLICE_SHIFT_MM * _normal(ds)
            ds.ImagePositionPatient = [round(float(v), 4) for v in moved]
            if "SliceLocation" in ds:
                ds.SliceLocation = round(float(ds.SliceLocation) + SLICE_SHIFT_MM, 4)
    elif fault is Fault.FRAME_OF_REFERENCE:
        for ds in hit:
            ds.FrameOfReferenceUID = _uid(ds.FrameOfReferenceUID, "own frame", phase)
    elif fault is Fault.THREE_PHASES:
        del phases[phase]
    return phases


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
