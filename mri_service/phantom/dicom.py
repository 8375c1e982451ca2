"""A phantom series written as real DICOM MR images: files, folders or the upload zip."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
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
from mri_service.phantom.series import BITS_STORED, PhantomSeries

# Fixed, obviously synthetic identity: a phantom never looks like a real patient.
PATIENT_NAME = "PHANTOM^GENERATED"
PATIENT_ID = "PHANTOM"
STUDY_DATE = "20000101"


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
