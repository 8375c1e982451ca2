"""What the layout builders' tests share: the phantom's size and ways to read a zip back."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from mri_service.phantom import PhantomSeries, PhantomSpec
from mri_service.tests import layouts
from mri_service.tests.layouts import (
    DUKE,
    SIEMENS,
    along_normal,
)

T = TypeVar("T")
SPEC = PhantomSpec(slices=8, size=48, seed=5)
SLICES, SIZE = SPEC.slices, SPEC.size
DUKE_PHASE = {description: phase for phase, description in DUKE.dynamic.items()}
SIEMENS_PHASE = {description: phase for phase, description in SIEMENS.dynamic.items()}
UID_DIGITS = re.compile(r"^\d{5}$")
# What a real MR image carries (pydicom's MR_small.dcm) and an ingest may rely on.
IMAGE_KEYWORDS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "Modality", "Manufacturer", "PatientName", "PatientID",
    "StudyDate", "StudyTime", "StudyID", "SeriesNumber", "AcquisitionNumber",
    "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
    "SliceThickness", "PixelSpacing", "Rows", "Columns", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "PixelData",
)  # fmt: skip


def zip_entries(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


def pydicom_testdata(name: str) -> str:
    """Returns the path of one of pydicom's bundled real files."""
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return path


def is_dicom(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def read_dicoms(zip_path: Path) -> dict[str, Dataset]:
    """Returns every DICOM image of the zip (DICOMDIR left out) by entry name."""
    found: dict[str, Dataset] = {}
    for name, data in zip_entries(zip_path).items():
        if is_dicom(data) and not name.endswith("DICOMDIR"):
            found[name] = pydicom.dcmread(io.BytesIO(data))
    return found


def grouped_by(datasets: dict[str, Dataset], keyword: str) -> dict[str, list[Dataset]]:
    """Returns datasets grouped by a tag's value, each group in anatomical order."""
    groups: dict[str, list[Dataset]] = {}
    for ds in datasets.values():
        groups.setdefault(str(ds.get(keyword)), []).append(ds)
    return {key: sorted(group, key=along_normal) for key, group in groups.items()}


def stacked_pixels(datasets: list[Dataset]) -> np.ndarray:
    return np.stack([ds.pixel_array for ds in datasets])


def assert_phase(datasets: list[Dataset], series: PhantomSeries, phase: str) -> None:
    """Asserts the images, in anatomical order, decode to the phantom's phase."""
    assert np.array_equal(stacked_pixels(sorted(datasets, key=along_normal)), series.phases[phase])


def image_times(ds: Dataset) -> tuple[str, str, str]:
    return str(ds.SeriesTime), str(ds.AcquisitionTime), str(ds.ContentTime)


def as_seconds(value: str) -> float:
    return int(value[0:2]) * 3600 + int(value[2:4]) * 60 + float(value[4:])


def extracted(zip_path: Path, target: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target


def record_pairs(dicomdir: Dataset) -> set[tuple[str, str]]:
    """Returns the (parent, child) directory record types of a DICOMDIR."""
    pairs: set[tuple[str, str]] = set()

    def walk(node: object, parent: str) -> None:
        for child in getattr(node, "children", []):
            pairs.add((parent, child.record_type))
            walk(child, child.record_type)

    walk(FileSet(dicomdir)._tree, "ROOT")
    return pairs


def source_uids(series: PhantomSeries) -> set[str]:
    return {str(ds.SOPInstanceUID) for ds in layouts.all_datasets(layouts.load_phases(series))}
