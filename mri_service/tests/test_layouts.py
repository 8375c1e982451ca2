"""Tests of the layout builders: each zip holds exactly what its builder's docstring claims."""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    MRImageStorage,
)

from mri_service.domain import PASSES, PHASES, PRE
from mri_service.phantom import PhantomSeries, PhantomSpec, generate_series, write_series_zip
from mri_service.tests import layouts
from mri_service.tests.layouts import (
    CANARY,
    DUKE,
    DUKE_PATIENT,
    FOURTH_PASS,
    OTHER_PATIENT,
    SIEMENS,
    SIEMENS_SAME_NAME,
    TCIA_METADATA_COLUMNS,
    Encoding,
    Fault,
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


# --- helpers -------------------------------------------------------------------------------


def _entries(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


def _testdata(name: str) -> str:
    """Returns the path of one of pydicom's bundled real files."""
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return path


def _is_dicom(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def _dicoms(zip_path: Path) -> dict[str, Dataset]:
    """Returns every DICOM image of the zip (DICOMDIR left out) by entry name."""
    found: dict[str, Dataset] = {}
    for name, data in _entries(zip_path).items():
        if _is_dicom(data) and not name.endswith("DICOMDIR"):
            found[name] = pydicom.dcmread(io.BytesIO(data))
    return found


def _by(datasets: dict[str, Dataset], keyword: str) -> dict[str, list[Dataset]]:
    """Returns datasets grouped by a tag's value, each group in anatomical order."""
    groups: dict[str, list[Dataset]] = {}
    for ds in datasets.values():
        groups.setdefault(str(ds.get(keyword)), []).append(ds)
    return {key: sorted(group, key=along_normal) for key, group in groups.items()}


def _stack(datasets: list[Dataset]) -> np.ndarray:
    return np.stack([ds.pixel_array for ds in datasets])


def _assert_phase(datasets: list[Dataset], series: PhantomSeries, phase: str) -> None:
    """Asserts the images, in anatomical order, decode to the phantom's phase."""
    assert np.array_equal(_stack(sorted(datasets, key=along_normal)), series.phases[phase])


def _times(ds: Dataset) -> tuple[str, str, str]:
    return str(ds.SeriesTime), str(ds.AcquisitionTime), str(ds.ContentTime)


def _seconds(value: str) -> float:
    return int(value[0:2]) * 3600 + int(value[2:4]) * 60 + float(value[4:])


def _extract(zip_path: Path, target: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target


def _record_pairs(dicomdir: Dataset) -> set[tuple[str, str]]:
    """Returns the (parent, child) directory record types of a DICOMDIR."""
    pairs: set[tuple[str, str]] = set()

    def walk(node: object, parent: str) -> None:
        for child in getattr(node, "children", []):
            pairs.add((parent, child.record_type))
            walk(child, child.record_type)

    walk(FileSet(dicomdir)._tree, "ROOT")
    return pairs


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def series() -> PhantomSeries:
    return generate_series(SPEC)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("layouts")


@pytest.fixture(scope="module")
def breastwise(series: PhantomSeries, out: Path) -> Path:
    return write_series_zip(series, out / "breastwise.zip")


@pytest.fixture(scope="module")
def tcia(series: PhantomSeries, out: Path) -> Path:
    return layouts.write_tcia_zip(
        series, out / "tcia.zip", fourth_pass=True, t1=True, localizer=True
    )


@pytest.fixture(scope="module")
def tcia_images(tcia: Path) -> dict[str, Dataset]:
    return _dicoms(tcia)


# --- reading the source --------------------------------------------------------------------


def test_a_phantom_and_its_zip_load_alike(series: PhantomSeries, breastwise: Path) -> None:
    from_series, from_zip = layouts.load_phases(series), layouts.load_phases(breastwise)
    assert tuple(from_series) == tuple(from_zip) == PHASES
    for phase in PHASES:
        assert list(from_series[phase]) == list(from_zip[phase])
        assert np.array_equal(_stack(list(from_zip[phase].values())), series.phases[phase])
        assert len({ds.SeriesInstanceUID for ds in from_zip[phase].values()}) == 1


def test_shuffled_names_load_in_anatomical_order(series: PhantomSeries, out: Path) -> None:
    shuffled = write_series_zip(series, out / "shuffled.zip", shuffle_names=True, seed=3)
    phases = layouts.load_phases(shuffled)
    assert list(phases[PRE]) != sorted(phases[PRE])
    assert np.array_equal(_stack(list(phases[PRE].values())), series.phases[PRE])


def test_a_zip_without_every_phase_is_refused(breastwise: Path, out: Path) -> None:
    kept = [(n, d) for n, d in _entries(breastwise).items() if "/3rd_pass/" not in n]
    with pytest.raises(ValueError, match="3rd_pass"):
        layouts.load_phases(layouts.write_zip(out / "three.zip", kept))


def test_images_carry_what_a_real_mr_image_carries(tcia_images: dict[str, Dataset]) -> None:
    real = pydicom.dcmread(_testdata("MR_small.dcm"))
    expected = [keyword for keyword in IMAGE_KEYWORDS if keyword in real]
    assert len(expected) >= 20
    for ds in tcia_images.values():
        assert [k for k in expected if k not in ds] == []
        assert len(ds.ImageOrientationPatient) == 6 and len(ds.ImagePositionPatient) == 3
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


# --- TCIA ----------------------------------------------------------------------------------

TCIA_PATH = re.compile(
    r"^Duke-Breast-Cancer-MRI/Breast_MRI_001/01-01-1990-NA-MRI BREAST BILATERAL-(\d{5})/"
    r"(\d+)\.000000-([^/]+)-(\d{5})/1-(\d\d)\.dcm$"
)


def test_tcia_paths_are_the_nbia_retrievers(tcia_images: dict[str, Dataset]) -> None:
    folders: dict[str, list[tuple[int, Dataset]]] = {}
    for name, ds in tcia_images.items():
        match = TCIA_PATH.match(name)
        assert match, name
        study, number, description, suffix, index = match.groups()
        assert study == ds.StudyInstanceUID.replace(".", "")[-5:]
        assert suffix == ds.SeriesInstanceUID.replace(".", "")[-5:]
        assert int(number) == ds.SeriesNumber and description == ds.SeriesDescription
        folders.setdefault(name.rpartition("/")[0], []).append((int(index), ds))
    assert len(folders) == 7  # localiser, T1, pre, four passes
    for files in folders.values():
        # 1-01, 1-02, ... in InstanceNumber order, with no gap.
        indices = sorted(index for index, _ in files)
        assert indices == list(range(1, len(files) + 1))
        assert [ds.InstanceNumber for _, ds in sorted(files, key=lambda f: f[0])] == sorted(
            ds.InstanceNumber for _, ds in files
        )


def test_tcia_dynamic_series_are_timed_and_numbered(
    series: PhantomSeries, tcia_images: dict[str, Dataset]
) -> None:
    groups = _by(tcia_images, "SeriesDescription")
    dynamic = [*PHASES, FOURTH_PASS]
    assert set(groups) == {*(DUKE.dynamic[p] for p in dynamic), DUKE.t1, DUKE.localizer}
    for phase in dynamic:
        _assert_phase(
            groups[DUKE.dynamic[phase]], series, {FOURTH_PASS: "3rd_pass"}.get(phase, phase)
        )
    firsts = [groups[DUKE.dynamic[phase]][0] for phase in dynamic]
    assert [ds.SeriesNumber for ds in firsts] == [3, 4, 5, 6, 7]
    for column in range(3):
        moments = [_seconds(_times(ds)[column]) for ds in firsts]
        assert all(b > a for a, b in itertools.pairwise(moments))
        assert [b - a for a, b in itertools.pairwise(moments[1:])] == [90.0] * 3
    for group in (groups[DUKE.dynamic[phase]] for phase in dynamic):
        assert len({(_times(ds), ds.SeriesInstanceUID, ds.SeriesNumber) for ds in group}) == 1
    assert "ContrastBolusAgent" not in firsts[0] and all(
        "ContrastBolusAgent" in d for d in firsts[1:]
    )
    third, fourth = groups[DUKE.dynamic["3rd_pass"]], groups[DUKE.dynamic[FOURTH_PASS]]
    assert third[0].SeriesInstanceUID != fourth[0].SeriesInstanceUID
    assert not {ds.SOPInstanceUID for ds in third} & {ds.SOPInstanceUID for ds in fourth}


def test_tcia_study_is_one_patient_one_study(tcia_images: dict[str, Dataset]) -> None:
    images = list(tcia_images.values())
    assert len({ds.StudyInstanceUID for ds in images}) == 1
    assert {str(ds.PatientName) for ds in images} == {DUKE_PATIENT.name}
    assert {ds.PatientID for ds in images} == {DUKE_PATIENT.patient_id}
    assert {ds.StudyDate for ds in images} == {"19900101"}
    assert {ds.PatientIdentityRemoved for ds in images} == {"YES"}
    assert len({ds.SOPInstanceUID for ds in images}) == len(images)
    assert len({ds.FrameOfReferenceUID for ds in images}) == 1


def test_tcia_extra_series(series: PhantomSeries, tcia_images: dict[str, Dataset]) -> None:
    groups = _by(tcia_images, "SeriesDescription")
    t1, localizer = groups[DUKE.t1], groups[DUKE.localizer]
    assert len(t1) == SLICES // 2 and {(ds.Rows, ds.Columns) for ds in t1} == {(72, 72)}
    assert {ds.SeriesNumber for ds in t1} == {2}
    fov = {round(float(ds.PixelSpacing[0]) * ds.Rows, 3) for ds in t1}
    assert fov == {round(SPEC.field_of_view_mm, 3)}
    assert len(localizer) == 3 and {ds.SeriesNumber for ds in localizer} == {1}
    assert all(ds.ImageType[2] == "LOCALIZER" for ds in localizer)
    normals = {tuple(np.abs(np.round(layouts._normal(ds), 6)).tolist()): ds for ds in localizer}
    assert set(normals) == {(0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)}
    axial, sagittal = normals[(0.0, 0.0, 1.0)], normals[(1.0, 0.0, 0.0)]
    assert np.array_equal(axial.pixel_array, series.phases[PRE][SLICES // 2])
    assert (sagittal.Rows, sagittal.Columns) == (SLICES, SIZE)
    assert np.array_equal(sagittal.pixel_array, series.phases[PRE][::-1, :, SIZE // 2])
    uids = {ds.SeriesInstanceUID for ds in tcia_images.values()}
    assert len(uids) == 7


def test_tcia_metadata_csv_and_license(tcia: Path, tcia_images: dict[str, Dataset]) -> None:
    entries = _entries(tcia)
    assert entries["LICENSE"].strip()
    rows = list(csv.DictReader(io.StringIO(entries["metadata.csv"].decode())))
    assert tuple(rows[0]) == TCIA_METADATA_COLUMNS
    assert len(rows) == 7
    for row in rows:
        assert row["File Location"].startswith(".\\Duke-Breast-Cancer-MRI\\Breast_MRI_001\\")
        folder = row["File Location"][2:].replace("\\", "/")
        files = [ds for name, ds in tcia_images.items() if name.rpartition("/")[0] == folder]
        assert len(files) == int(row["Number of Images"]) > 0
        assert {ds.SeriesInstanceUID for ds in files} == {row["Series UID"]}
        assert {ds.SeriesDescription for ds in files} == {row["Series Description"]}
        assert row["Study UID"] == files[0].StudyInstanceUID
        assert row["Subject ID"] == "Breast_MRI_001" and row["Study Date"] == "01-01-1990"
        assert (row["Modality"], row["SOP Class Name"]) == ("MR", "MR Image Storage")
        assert row["SOP Class UID"] == MRImageStorage
        assert re.fullmatch(r"\d+\.\d\d [KM]B", row["File Size"])


def test_tcia_manifest_folder_and_posix_locations(series: PhantomSeries, out: Path) -> None:
    path = layouts.write_tcia_zip(
        series, out / "manifest.zip", manifest_folder="manifest-1600000000000",
        windows_locations=False,
    )  # fmt: skip
    names = list(_entries(path))
    assert names[:2] == ["manifest-1600000000000/metadata.csv", "manifest-1600000000000/LICENSE"]
    assert all(n.startswith("manifest-1600000000000/Duke-Breast-Cancer-MRI/") for n in names[2:])
    table = _entries(path)["manifest-1600000000000/metadata.csv"].decode()
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 4 and all(r["File Location"].startswith("./Duke-") for r in rows)


def test_nbia_file_names_rank_acquisitions_then_instances() -> None:
    def image(acquisition: int | None, instance: int) -> Dataset:
        ds = Dataset()
        if acquisition is not None:
            ds.AcquisitionNumber = acquisition
        ds.InstanceNumber = instance
        return ds

    images = [image(7, 30), image(7, 10), image(None, 5), image(2, 1), image(7, 20)]
    assert layouts.nbia_file_names(images) == [
        "3-03.dcm", "3-01.dcm", "1-01.dcm", "2-01.dcm", "3-02.dcm",
    ]  # fmt: skip
    many = layouts.nbia_file_names([image(1, n) for n in range(120, 0, -1)])
    assert many[-1] == "1-001.dcm" and many[0] == "1-120.dcm"


# --- CD / PACS -----------------------------------------------------------------------------

FILE_SET_PATH = re.compile(r"^PT\d{6}/ST\d{6}/SE\d{6}/IM\d{6}$")


def test_the_file_id_pattern_is_the_one_real_file_sets_use() -> None:
    tiny = Path(_testdata("DICOMDIR")).parent / "TINY_ALPHA"
    files = [p.relative_to(tiny).as_posix() for p in tiny.rglob("IM*")]
    assert files and all(re.match(r"^PT\d{6}/ST\d{6}/SE\d{6}/IM[0-9A-Z]{6}$", f) for f in files)


def test_dicomdir_zip_is_a_file_set(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_dicomdir_zip(series, out / "cd.zip", localizer=True, patient=CANARY)
    names = list(_entries(zip_path))
    assert names[0] == "DICOMDIR"
    assert all(FILE_SET_PATH.match(name) for name in names[1:])
    root = _extract(zip_path, out / "cd")
    dicomdir = pydicom.dcmread(root / "DICOMDIR")
    assert dicomdir.file_meta.MediaStorageSOPClassUID == MediaStorageDirectoryStorage
    real = pydicom.dcmread(_testdata("DICOMDIR"))
    assert real.file_meta.MediaStorageSOPClassUID == MediaStorageDirectoryStorage
    assert _record_pairs(dicomdir) <= _record_pairs(real)
    file_set = FileSet(dicomdir)
    assert len(file_set) == len(names) - 1 == 4 * SLICES + 3
    referenced = {Path(i.path).relative_to(root).as_posix() for i in file_set}
    assert referenced == set(names[1:])
    assert file_set.find_values("PatientID") == [CANARY.patient_id]
    assert len(file_set.find_values("StudyInstanceUID")) == 1
    assert len(file_set.find_values("SeriesInstanceUID")) == 5
    loaded = {i.SOPInstanceUID: i.load() for i in file_set}
    assert all(uid == ds.SOPInstanceUID for uid, ds in loaded.items())
    groups = _by({str(uid): ds for uid, ds in loaded.items()}, "SeriesDescription")
    for description, phase in SIEMENS_PHASE.items():
        if phase in PHASES:
            _assert_phase(groups[description], series, phase)
            assert {ds.Manufacturer for ds in groups[description]} == {"SIEMENS"}
    numbers = [groups[SIEMENS.dynamic[p]][0].SeriesNumber for p in PHASES]
    assert numbers == [4, 5, 6, 7]
    # IM000000 is not the first slice: the File-set was filled in a shuffled order.
    pre = sorted(
        (i.path, i.load().InstanceNumber)
        for i in file_set.find(SeriesInstanceUID=groups[SIEMENS.dynamic[PRE]][0].SeriesInstanceUID)
    )
    assert [n for _, n in pre] != sorted(n for _, n in pre)


def test_dicomdir_zip_with_one_protocol_name(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_dicomdir_zip(
        series, out / "same.zip", protocol=SIEMENS_SAME_NAME, wrap_folder="CD"
    )
    images = _dicoms(zip_path)
    assert "CD/DICOMDIR" in _entries(zip_path)
    assert {ds.SeriesDescription for ds in images.values()} == {"t1_fl3d_tra_dynaVIEWS_spair"}
    by_number = _by(images, "SeriesNumber")
    assert sorted(by_number, key=int) == ["4", "5", "6", "7"]
    for number, phase in zip(("4", "5", "6", "7"), PHASES, strict=True):
        _assert_phase(by_number[number], series, phase)


def test_pacs_export_is_flat_mixed_and_cluttered(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_pacs_export_zip(series, out / "pacs.zip")
    entries = _entries(zip_path)
    images = _dicoms(zip_path)
    assert len(images) == 4 * SLICES
    assert all(re.fullmatch(r"DATA/\d{4}/IM\d{6}", name) for name in images)
    assert max(Counter(name.rpartition("/")[0] for name in images).values()) == 7
    # Mixed: walking the files in name order hops between series far more than 4 times.
    walk = [images[name].SeriesInstanceUID for name in sorted(images)]
    assert sum(a != b for a, b in itertools.pairwise(walk)) > 12
    for description, group in _by(images, "SeriesDescription").items():
        _assert_phase(group, series, SIEMENS_PHASE[description])
    assert b"DICOM" in entries["README.TXT"]
    assert Image.open(io.BytesIO(entries["DATA/0001/THUMB.JPG"])).format == "JPEG"
    assert entries[".DS_Store"][4:8] == b"Bud1"
    for name in [n for n in entries if not n.startswith("__MACOSX/")]:
        folder, _, base = name.rpartition("/")
        fork = entries[f"__MACOSX/{folder}/._{base}" if folder else f"__MACOSX/._{base}"]
        assert fork[:4] == b"\x00\x05\x16\x07" and not _is_dicom(fork)
    with zipfile.ZipFile(zip_path) as archive:
        folders = {i.filename for i in archive.infolist() if i.is_dir()}
    assert {"DATA/", "DATA/0001/", "__MACOSX/", "__MACOSX/DATA/0001/"} <= folders


def test_pacs_export_named_by_uid(series: PhantomSeries, out: Path) -> None:
    images = _dicoms(layouts.write_pacs_export_zip(series, out / "uid.zip", names="uid"))
    assert len(images) == 4 * SLICES
    for name, ds in images.items():
        assert name.rpartition("/")[2] == ds.SOPInstanceUID
    with pytest.raises(ValueError, match="DICOMDIR"):
        layouts.write_pacs_export_zip(series, out / "bad.zip", names="uid", dicomdir=True)


def test_pacs_export_with_a_dicomdir_of_flat_files(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_pacs_export_zip(
        series, out / "flat.zip", dicomdir=True, clutter=False, t1=True
    )
    names = list(_entries(zip_path))
    assert names[0] == "DICOMDIR" and all(re.fullmatch(r"DATA/\d{4}/IM\d{6}", n) for n in names[1:])
    root = _extract(zip_path, out / "flat")
    file_set = FileSet(pydicom.dcmread(root / "DICOMDIR"))
    assert len(file_set) == 4 * SLICES + SLICES // 2
    for instance in file_set:
        assert Path(instance.path).relative_to(root).as_posix() in names
        assert instance.load().SOPInstanceUID == instance.SOPInstanceUID
    assert len(file_set.find_values("SeriesInstanceUID")) == 5


# --- single-series multiphase --------------------------------------------------------------


def _source_uids(series: PhantomSeries) -> set[str]:
    return {str(ds.SOPInstanceUID) for ds in layouts.all_datasets(layouts.load_phases(series))}


@pytest.mark.parametrize(
    ("names", "pattern"), [("I", r"Ser5/I\d{7}\.dcm"), ("Ser", r"Ser5/Ser5_Img\d{3}")]
)
def test_ge_multiphase(
    series: PhantomSeries, out: Path, names: Literal["I", "Ser"], pattern: str
) -> None:
    zip_path = layouts.write_ge_multiphase_zip(series, out / f"ge-{names}.zip", names=names)
    images = _dicoms(zip_path)
    assert len(images) == 4 * SLICES and all(re.fullmatch(pattern, n) for n in images)
    values = list(images.values())
    assert len({ds.SeriesInstanceUID for ds in values}) == 1
    assert {(ds.SeriesNumber, ds.SeriesDescription) for ds in values} == {
        (5, "Ax Vibrant MultiPhase")
    }
    assert {ds.NumberOfTemporalPositions for ds in values} == {4}
    assert len({ds.FrameOfReferenceUID for ds in values}) == 1
    assert len({ds.SOPInstanceUID for ds in values}) == len(values)
    assert not {ds.SOPInstanceUID for ds in values} & _source_uids(series)
    phases = _by(images, "TemporalPositionIdentifier")
    assert sorted(phases) == ["1", "2", "3", "4"]
    triggers = []
    for temporal, phase in enumerate(PHASES, start=1):
        group = phases[str(temporal)]
        _assert_phase(group, series, phase)
        assert [ds.InstanceNumber for ds in group] == list(
            range((temporal - 1) * SLICES + 1, temporal * SLICES + 1)
        )
        assert len({float(ds.TriggerTime) for ds in group}) == 1
        triggers.append(float(group[0].TriggerTime))
        assert [ds.ImagePositionPatient for ds in group] == [
            ds.ImagePositionPatient for ds in phases["1"]
        ]
    assert triggers == sorted(triggers) and len(set(triggers)) == 4
    in_name_order = [images[name].InstanceNumber for name in sorted(images)]
    assert in_name_order != sorted(in_name_order)


@pytest.mark.parametrize("instance_numbers", ["running", "per_acquisition"])
def test_siemens_multiphase(
    series: PhantomSeries, out: Path, instance_numbers: Literal["running", "per_acquisition"]
) -> None:
    zip_path = layouts.write_siemens_multiphase_zip(
        series, out / f"siemens-{instance_numbers}.zip", instance_numbers=instance_numbers,
        patient=CANARY,
    )  # fmt: skip
    images = _dicoms(zip_path)
    ima = re.compile(
        r"MAMMA_ROUTINE_20000101/T1_FL3D_TRA_DYNAVIEWS_SPAIR_0005/CANARY_PATIENT\.MR\."
        r"MAMMA_ROUTINE\.0005\.\d{4}\.2000\.01\.01\.\d\d\.\d\d\.\d\d\.\d{6}\.\d{8}\.IMA"
    )
    assert len(images) == 4 * SLICES and all(ima.fullmatch(n) for n in images)
    values = list(images.values())
    assert len({ds.SeriesInstanceUID for ds in values}) == 1
    assert {ds.SeriesDescription for ds in values} == {"t1_fl3d_tra_dynaVIEWS_spair"}
    assert not any("TemporalPositionIdentifier" in ds or "TriggerTime" in ds for ds in values)
    assert not {ds.SOPInstanceUID for ds in values} & _source_uids(series)
    groups = _by(images, "AcquisitionNumber")
    assert sorted(groups) == ["1", "2", "3", "4"]
    moments = []
    for acquisition, phase in enumerate(PHASES, start=1):
        group = groups[str(acquisition)]
        _assert_phase(group, series, phase)
        assert len({ds.AcquisitionTime for ds in group}) == 1
        moments.append(_seconds(group[0].AcquisitionTime))
        assert "." in group[0].AcquisitionTime  # syngo's fractional seconds
    assert moments == sorted(moments) and len(set(moments)) == 4
    numbers = Counter(int(ds.InstanceNumber) for ds in values)
    if instance_numbers == "running":
        assert sorted(numbers) == list(range(1, 4 * SLICES + 1))
    else:
        assert numbers == dict.fromkeys(range(1, SLICES + 1), 4)


def test_siemens_multiphase_horos_names(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_siemens_multiphase_zip(series, out / "horos.zip", names="dcm")
    names = sorted(_dicoms(zip_path))
    assert names[0].endswith("/IM-0005-0001.dcm") and names[-1].endswith(
        f"/IM-0005-{4 * SLICES:04d}.dcm"
    )


# --- canary patient ------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[PhantomSeries, Path], Path]] = {
    "tcia": lambda s, p: layouts.write_tcia_zip(s, p, patient=CANARY, t1=True, localizer=True),
    "dicomdir": lambda s, p: layouts.write_dicomdir_zip(s, p, patient=CANARY, t1=True),
    "pacs": lambda s, p: layouts.write_pacs_export_zip(s, p, patient=CANARY, localizer=True),
    "ge": lambda s, p: layouts.write_ge_multiphase_zip(s, p, patient=CANARY),
    "siemens": lambda s, p: layouts.write_siemens_multiphase_zip(s, p, patient=CANARY),
    "refusal": lambda s, p: layouts.write_refusal_zip(
        s, p, Fault.TWO_STUDIES, layout="tcia", patient=CANARY
    ),
}


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_the_canary_patient_is_on_every_image(
    series: PhantomSeries, out: Path, builder: str
) -> None:
    images = _dicoms(BUILDERS[builder](series, out / f"canary-{builder}.zip"))
    assert images
    for ds in images.values():
        assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate) == (
            "CANARY^PATIENT", "CANARY-ID-4711", "19010101",
        )  # fmt: skip
    if builder in ("tcia", "refusal"):
        assert all(name.split("/")[1] == "CANARY-ID-4711" for name in images)


# --- pixel encodings -----------------------------------------------------------------------


def _meaning(ds: Dataset) -> np.ndarray:
    """Returns what a conformant reader makes of an image: MONOCHROME1 undone, rescaled."""
    stored = ds.pixel_array.astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        stored = (2 ** int(ds.BitsStored) - 1) - stored
    return stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _encoded_phases(zip_path: Path, breastwise: Path) -> dict[str, list[Dataset]]:
    images = _dicoms(zip_path)
    assert sorted(images) == sorted(_dicoms(breastwise))  # the same names and folders
    return {
        phase: sorted((ds for n, ds in images.items() if f"/{phase}/" in n), key=along_normal)
        for phase in PHASES
    }


@pytest.mark.parametrize("encoding", list(Encoding))
def test_each_encoding_keeps_the_meaning(
    series: PhantomSeries, breastwise: Path, out: Path, encoding: Encoding
) -> None:
    zip_path = layouts.write_encoded_zip(breastwise, out / f"encoded-{encoding}.zip", encoding)
    phases = _encoded_phases(zip_path, breastwise)
    images = [ds for group in phases.values() for ds in group]
    syntax = layouts.TRANSFER_SYNTAXES.get(encoding, ExplicitVRLittleEndian)
    assert {ds.file_meta.TransferSyntaxUID for ds in images} == {syntax}
    for phase, group in phases.items():
        meaning = np.stack([_meaning(ds) for ds in group])
        original = series.physical(phase).astype(np.float64)
        if encoding is Encoding.RESCALED:
            # An affine function of the original with positive slope, not the original.
            slope, intercept = np.polyfit(original.ravel(), meaning.ravel(), 1)
            assert slope > 0 and not np.allclose(meaning, original)
            assert np.allclose(meaning, slope * original + intercept, atol=1e-6)
            assert math.isclose(slope, 7.5)
        else:
            assert np.array_equal(meaning, original)
    first = images[0]
    if encoding is Encoding.MONOCHROME1:
        assert first.PhotometricInterpretation == "MONOCHROME1"
        assert np.array_equal(first.pixel_array, 4095 - series.phases[PRE][0])
    elif encoding is Encoding.RESCALED:
        assert (first.BitsStored, first.HighBit) == (14, 13)
        assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.25, 100.0)
    elif encoding is Encoding.HIGH_BITS:
        raw = np.frombuffer(first.PixelData, dtype="<u2")
        assert (first.BitsAllocated, first.BitsStored) == (16, 12)
        assert ((raw >> 12) > 0).all() and len(np.unique(raw >> 12)) > 4
    elif encoding is Encoding.SIGNED:
        assert first.PixelRepresentation == 1 and first.pixel_array.dtype == np.int16
        assert first.pixel_array.min() < 0
    elif syntax.is_compressed:
        assert first["PixelData"].is_undefined_length
        assert len(first.PixelData) < SIZE * SIZE * 2
    assert {ds.SOPInstanceUID for ds in images} == _source_uids(series)


def test_encodings_combine(series: PhantomSeries, breastwise: Path, out: Path) -> None:
    zip_path = layouts.write_encoded_zip(
        series, out / "combined.zip", Encoding.MONOCHROME1, Encoding.HIGH_BITS, Encoding.RLE
    )
    for phase, group in _encoded_phases(zip_path, breastwise).items():
        assert np.array_equal(np.stack([_meaning(ds) for ds in group]), series.physical(phase))
        assert {ds.PhotometricInterpretation for ds in group} == {"MONOCHROME1"}


@pytest.mark.parametrize(
    "encodings",
    [
        (Encoding.RLE, Encoding.MONOCHROME1),
        (Encoding.RLE, Encoding.JPEG_LS),
        (Encoding.SIGNED, Encoding.MONOCHROME1),
        (Encoding.SIGNED, Encoding.SIGNED),
    ],
)
def test_encodings_that_cannot_combine_are_refused(
    series: PhantomSeries, out: Path, encodings: tuple[Encoding, ...]
) -> None:
    with pytest.raises(ValueError):
        layouts.write_encoded_zip(series, out / "refused.zip", *encodings)


# --- refusal cases -------------------------------------------------------------------------


def _groups(zip_path: Path, layout: str) -> dict[tuple[str, str], list[Dataset]]:
    """Returns (study folder or wrap, phase) -> images in anatomical order."""
    groups: dict[tuple[str, str], list[Dataset]] = {}
    for name, ds in _dicoms(zip_path).items():
        parts = name.split("/")
        if layout == "breastwise":
            key = (parts[0], parts[-2])
        else:
            key = (ds.StudyInstanceUID, DUKE_PHASE[ds.SeriesDescription])
        groups.setdefault(key, []).append(ds)
    return {key: sorted(group, key=along_normal) for key, group in groups.items()}


def _only(values: set[T]) -> T:
    assert len(values) == 1, values
    return next(iter(values))


@pytest.fixture(scope="module")
def originals(series: PhantomSeries) -> dict[str, list[Dataset]]:
    return {p: list(files.values()) for p, files in layouts.load_phases(series).items()}


@pytest.mark.parametrize("layout", ["breastwise", "tcia"])
@pytest.mark.parametrize("fault", list(Fault))
def test_each_refusal_case_has_exactly_its_fault(
    series: PhantomSeries,
    originals: dict[str, list[Dataset]],
    out: Path,
    fault: Fault,
    layout: Literal["breastwise", "tcia"],
) -> None:
    zip_path = layouts.write_refusal_zip(
        series,
        out / f"refusal-{fault}-{layout}.zip",
        fault,
        layout=layout,
    )
    groups = _groups(zip_path, layout)
    if layout == "tcia":
        names = list(_entries(zip_path))
        assert names[:2] == ["metadata.csv", "LICENSE"]
        rows = list(csv.DictReader(io.StringIO(_entries(zip_path)["metadata.csv"].decode())))
        assert len(rows) == len({n.rpartition("/")[0] for n in names[2:]})
    if fault is Fault.TWO_STUDIES:
        studies = {study for study, _ in groups}
        assert len(studies) == 2
        dates = set()
        for study in studies:
            for phase in PHASES:
                _assert_phase(groups[study, phase], series, phase)
            images = [ds for (s, _), group in groups.items() if s == study for ds in group]
            assert len({ds.StudyInstanceUID for ds in images}) == 1
            assert len({ds.FrameOfReferenceUID for ds in images}) == 1
            dates.add(_only({ds.StudyDate for ds in images}))
        first, second = sorted(str(d) for d in dates)
        assert int(second[:4]) - int(first[:4]) == 1
        return
    by_phase = {phase: group for (_, phase), group in groups.items()}
    assert len(by_phase) == len(groups)
    if fault is Fault.THREE_PHASES:
        assert sorted(by_phase) == sorted((PRE, "1st_pass", "2nd_pass"))
        for phase, group in by_phase.items():
            _assert_phase(group, series, phase)
        return
    assert sorted(by_phase) == sorted(PHASES)
    if fault is Fault.DUPLICATE_SERIES:
        for group in by_phase.values():
            _assert_phase(group, series, PRE)
            assert [ds.SOPInstanceUID for ds in group] == [
                ds.SOPInstanceUID for ds in originals[PRE]
            ]
            assert (
                _only({ds.SeriesInstanceUID for ds in group}) == originals[PRE][0].SeriesInstanceUID
            )
        return
    hit = "2nd_pass"
    for phase in PHASES:
        if phase != hit:
            _assert_phase(by_phase[phase], series, phase)
            assert [ds.SOPInstanceUID for ds in by_phase[phase]] == [
                ds.SOPInstanceUID for ds in originals[phase]
            ]
    wrong, right = by_phase[hit], originals[hit]
    others = [ds for phase in PHASES if phase != hit for ds in by_phase[phase]]

    def same(keyword: str) -> bool:
        return {str(ds.get(keyword)) for ds in wrong} == {str(ds.get(keyword)) for ds in others}

    if fault is not Fault.RESAMPLED:
        _assert_phase(wrong, series, "1st_pass" if fault is Fault.RETAGGED_COPY else hit)
    if fault is Fault.RETAGGED_COPY:
        assert not {ds.SOPInstanceUID for ds in wrong} & {ds.SOPInstanceUID for ds in right}
        assert _only({ds.SeriesInstanceUID for ds in wrong}) not in {
            ds.SeriesInstanceUID for ds in [*others, *right]
        }
        assert _only({ds.SeriesNumber for ds in wrong}) == (3 if layout == "breastwise" else 5)
        assert same("StudyInstanceUID") and same("FrameOfReferenceUID")
    elif fault is Fault.OTHER_PATIENT:
        assert _only({ds.PatientID for ds in wrong}) == OTHER_PATIENT.patient_id
        assert _only({str(ds.PatientName) for ds in wrong}) == OTHER_PATIENT.name
        assert _only({ds.PatientBirthDate for ds in wrong}) == OTHER_PATIENT.birth_date
        assert len({ds.StudyInstanceUID for ds in others}) == 1 and not same("StudyInstanceUID")
        assert not same("FrameOfReferenceUID")
        if layout == "tcia":
            subjects = {n.split("/")[1] for n in _dicoms(zip_path)}
            assert subjects == {DUKE_PATIENT.patient_id, OTHER_PATIENT.patient_id}
    elif fault is Fault.CT_MODALITY:
        assert {(ds.Modality, ds.SOPClassUID) for ds in wrong} == {("CT", CTImageStorage)}
        assert {ds.file_meta.MediaStorageSOPClassUID for ds in wrong} == {CTImageStorage}
        assert {ds.Modality for ds in others} == {"MR"}
        assert not any("ScanningSequence" in ds for ds in wrong)
    elif fault is Fault.RESAMPLED:
        assert {(ds.Rows, ds.Columns) for ds in wrong} == {(36, 36)}
        assert {(ds.Rows, ds.Columns) for ds in others} == {(SIZE, SIZE)}
        assert math.isclose(
            float(wrong[0].PixelSpacing[0]) * 36, float(others[0].PixelSpacing[0]) * SIZE,
            rel_tol=1e-5,
        )  # fmt: skip
    elif fault is Fault.PIXEL_SPACING:
        spacing = _only({float(ds.PixelSpacing[0]) for ds in wrong})
        assert math.isclose(spacing, 1.25 * float(others[0].PixelSpacing[0]), rel_tol=1e-5)
        assert same("ImagePositionPatient") and same("Rows")
    elif fault is Fault.ORIENTATION:
        tilt = math.degrees(
            math.acos(float(np.dot(layouts._normal(wrong[0]), layouts._normal(others[0]))))
        )
        assert math.isclose(tilt, 20.0, abs_tol=1e-3)
        assert same("ImagePositionPatient")
    elif fault is Fault.SLICE_POSITIONS:
        shifts = {
            round(along_normal(w) - along_normal(r), 3) for w, r in zip(wrong, right, strict=True)
        }
        assert shifts == {3.0}
        assert same("ImageOrientationPatient") and same("FrameOfReferenceUID")
    elif fault is Fault.FRAME_OF_REFERENCE:
        assert len({ds.FrameOfReferenceUID for ds in others}) == 1
        assert not same("FrameOfReferenceUID") and same("ImagePositionPatient")
    else:  # pragma: no cover - every fault is checked above
        raise AssertionError(fault)


def test_a_refusal_fault_can_hit_another_phase(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_refusal_zip(series, out / "pre-ct.zip", Fault.CT_MODALITY, phase=PRE)
    groups = _groups(zip_path, "breastwise")
    assert {ds.Modality for ds in groups["series", PRE]} == {"CT"}
    assert {ds.Modality for p in PASSES for ds in groups["series", p]} == {"MR"}
    with pytest.raises(ValueError, match="phase"):
        layouts.write_refusal_zip(series, out / "x.zip", Fault.CT_MODALITY, phase="4th")


def test_builders_are_deterministic(series: PhantomSeries, out: Path) -> None:
    first = layouts.write_tcia_zip(series, out / "again-1.zip", localizer=True)
    second = layouts.write_tcia_zip(series, out / "again-2.zip", localizer=True)
    assert first.read_bytes() == second.read_bytes()
