"""What the builders describe: patients, protocols, encodings, faults, study times."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeAlias

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from mri_service.domain import PHASES, PRE
from mri_service.phantom import PhantomSeries

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
