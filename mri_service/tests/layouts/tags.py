"""Reading a phantom series back, re-tagging it, and writing zips: what every layout builds on."""

from __future__ import annotations

import copy
import io
import zipfile
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    generate_uid,
)

from mri_service.domain import PHASES, PRE, position_along_normal
from mri_service.phantom import PhantomSeries, dicom_files
from mri_service.tests.layouts.base import (
    _CLOCK_ZERO,
    _ZIP_TIME,
    CONTENT_DELAY_S,
    DYNAMIC,
    DYNAMIC_OFFSETS_S,
    FOURTH_PASS,
    LOCALIZER_OFFSET_S,
    STUDY_OFFSET_S,
    T1_OFFSET_S,
    T1_SCALE,
    Patient,
    Phases,
    Protocol,
    Source,
)


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
