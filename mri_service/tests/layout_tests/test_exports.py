"""CD and PACS exports, single-series multiphase, and the canary patient on every image."""

from __future__ import annotations

import io
import itertools
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pydicom
import pytest
from PIL import Image
from pydicom.fileset import FileSet
from pydicom.uid import (
    MediaStorageDirectoryStorage,
)

from mri_service.domain import PHASES, PRE
from mri_service.phantom import PhantomSeries
from mri_service.tests import layouts
from mri_service.tests.layout_tests.checks import (
    SIEMENS_PHASE,
    SLICES,
    as_seconds,
    assert_phase,
    extracted,
    grouped_by,
    is_dicom,
    pydicom_testdata,
    read_dicoms,
    record_pairs,
    source_uids,
    zip_entries,
)
from mri_service.tests.layouts import (
    CANARY,
    SIEMENS,
    SIEMENS_SAME_NAME,
    Fault,
)

# --- CD / PACS -----------------------------------------------------------------------------

FILE_SET_PATH = re.compile(r"^PT\d{6}/ST\d{6}/SE\d{6}/IM\d{6}$")


def test_the_file_id_pattern_is_the_one_real_file_sets_use() -> None:
    tiny = Path(pydicom_testdata("DICOMDIR")).parent / "TINY_ALPHA"
    files = [p.relative_to(tiny).as_posix() for p in tiny.rglob("IM*")]
    assert files and all(re.match(r"^PT\d{6}/ST\d{6}/SE\d{6}/IM[0-9A-Z]{6}$", f) for f in files)


def test_dicomdir_zip_is_a_file_set(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_dicomdir_zip(series, out / "cd.zip", localizer=True, patient=CANARY)
    names = list(zip_entries(zip_path))
    assert names[0] == "DICOMDIR"
    assert all(FILE_SET_PATH.match(name) for name in names[1:])
    root = extracted(zip_path, out / "cd")
    dicomdir = pydicom.dcmread(root / "DICOMDIR")
    assert dicomdir.file_meta.MediaStorageSOPClassUID == MediaStorageDirectoryStorage
    real = pydicom.dcmread(pydicom_testdata("DICOMDIR"))
    assert real.file_meta.MediaStorageSOPClassUID == MediaStorageDirectoryStorage
    assert record_pairs(dicomdir) <= record_pairs(real)
    file_set = FileSet(dicomdir)
    assert len(file_set) == len(names) - 1 == 4 * SLICES + 3
    referenced = {Path(i.path).relative_to(root).as_posix() for i in file_set}
    assert referenced == set(names[1:])
    assert file_set.find_values("PatientID") == [CANARY.patient_id]
    assert len(file_set.find_values("StudyInstanceUID")) == 1
    assert len(file_set.find_values("SeriesInstanceUID")) == 5
    loaded = {i.SOPInstanceUID: i.load() for i in file_set}
    assert all(uid == ds.SOPInstanceUID for uid, ds in loaded.items())
    groups = grouped_by({str(uid): ds for uid, ds in loaded.items()}, "SeriesDescription")
    for description, phase in SIEMENS_PHASE.items():
        if phase in PHASES:
            assert_phase(groups[description], series, phase)
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
    images = read_dicoms(zip_path)
    assert "CD/DICOMDIR" in zip_entries(zip_path)
    assert {ds.SeriesDescription for ds in images.values()} == {"t1_fl3d_tra_dynaVIEWS_spair"}
    by_number = grouped_by(images, "SeriesNumber")
    assert sorted(by_number, key=int) == ["4", "5", "6", "7"]
    for number, phase in zip(("4", "5", "6", "7"), PHASES, strict=True):
        assert_phase(by_number[number], series, phase)


def test_pacs_export_is_flat_mixed_and_cluttered(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_pacs_export_zip(series, out / "pacs.zip")
    entries = zip_entries(zip_path)
    images = read_dicoms(zip_path)
    assert len(images) == 4 * SLICES
    assert all(re.fullmatch(r"DATA/\d{4}/IM\d{6}", name) for name in images)
    assert max(Counter(name.rpartition("/")[0] for name in images).values()) == 7
    # Mixed: walking the files in name order hops between series far more than 4 times.
    walk = [images[name].SeriesInstanceUID for name in sorted(images)]
    assert sum(a != b for a, b in itertools.pairwise(walk)) > 12
    for description, group in grouped_by(images, "SeriesDescription").items():
        assert_phase(group, series, SIEMENS_PHASE[description])
    assert b"DICOM" in entries["README.TXT"]
    assert Image.open(io.BytesIO(entries["DATA/0001/THUMB.JPG"])).format == "JPEG"
    assert entries[".DS_Store"][4:8] == b"Bud1"
    for name in [n for n in entries if not n.startswith("__MACOSX/")]:
        folder, _, base = name.rpartition("/")
        fork = entries[f"__MACOSX/{folder}/._{base}" if folder else f"__MACOSX/._{base}"]
        assert fork[:4] == b"\x00\x05\x16\x07" and not is_dicom(fork)
    with zipfile.ZipFile(zip_path) as archive:
        folders = {i.filename for i in archive.infolist() if i.is_dir()}
    assert {"DATA/", "DATA/0001/", "__MACOSX/", "__MACOSX/DATA/0001/"} <= folders


def test_pacs_export_named_by_uid(series: PhantomSeries, out: Path) -> None:
    images = read_dicoms(layouts.write_pacs_export_zip(series, out / "uid.zip", names="uid"))
    assert len(images) == 4 * SLICES
    for name, ds in images.items():
        assert name.rpartition("/")[2] == ds.SOPInstanceUID
    with pytest.raises(ValueError, match="DICOMDIR"):
        layouts.write_pacs_export_zip(series, out / "bad.zip", names="uid", dicomdir=True)


def test_pacs_export_with_a_dicomdir_of_flat_files(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_pacs_export_zip(
        series, out / "flat.zip", dicomdir=True, clutter=False, t1=True
    )
    names = list(zip_entries(zip_path))
    assert names[0] == "DICOMDIR" and all(re.fullmatch(r"DATA/\d{4}/IM\d{6}", n) for n in names[1:])
    root = extracted(zip_path, out / "flat")
    file_set = FileSet(pydicom.dcmread(root / "DICOMDIR"))
    assert len(file_set) == 4 * SLICES + SLICES // 2
    for instance in file_set:
        assert Path(instance.path).relative_to(root).as_posix() in names
        assert instance.load().SOPInstanceUID == instance.SOPInstanceUID
    assert len(file_set.find_values("SeriesInstanceUID")) == 5


# --- single-series multiphase --------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "pattern"), [("I", r"Ser5/I\d{7}\.dcm"), ("Ser", r"Ser5/Ser5_Img\d{3}")]
)
def test_ge_multiphase(
    series: PhantomSeries, out: Path, names: Literal["I", "Ser"], pattern: str
) -> None:
    zip_path = layouts.write_ge_multiphase_zip(series, out / f"ge-{names}.zip", names=names)
    images = read_dicoms(zip_path)
    assert len(images) == 4 * SLICES and all(re.fullmatch(pattern, n) for n in images)
    values = list(images.values())
    assert len({ds.SeriesInstanceUID for ds in values}) == 1
    assert {(ds.SeriesNumber, ds.SeriesDescription) for ds in values} == {
        (5, "Ax Vibrant MultiPhase")
    }
    assert {ds.NumberOfTemporalPositions for ds in values} == {4}
    assert len({ds.FrameOfReferenceUID for ds in values}) == 1
    assert len({ds.SOPInstanceUID for ds in values}) == len(values)
    assert not {ds.SOPInstanceUID for ds in values} & source_uids(series)
    phases = grouped_by(images, "TemporalPositionIdentifier")
    assert sorted(phases) == ["1", "2", "3", "4"]
    triggers = []
    for temporal, phase in enumerate(PHASES, start=1):
        group = phases[str(temporal)]
        assert_phase(group, series, phase)
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
    images = read_dicoms(zip_path)
    ima = re.compile(
        r"MAMMA_ROUTINE_20000101/T1_FL3D_TRA_DYNAVIEWS_SPAIR_0005/CANARY_PATIENT\.MR\."
        r"MAMMA_ROUTINE\.0005\.\d{4}\.2000\.01\.01\.\d\d\.\d\d\.\d\d\.\d{6}\.\d{8}\.IMA"
    )
    assert len(images) == 4 * SLICES and all(ima.fullmatch(n) for n in images)
    values = list(images.values())
    assert len({ds.SeriesInstanceUID for ds in values}) == 1
    assert {ds.SeriesDescription for ds in values} == {"t1_fl3d_tra_dynaVIEWS_spair"}
    assert not any("TemporalPositionIdentifier" in ds or "TriggerTime" in ds for ds in values)
    assert not {ds.SOPInstanceUID for ds in values} & source_uids(series)
    groups = grouped_by(images, "AcquisitionNumber")
    assert sorted(groups) == ["1", "2", "3", "4"]
    moments = []
    for acquisition, phase in enumerate(PHASES, start=1):
        group = groups[str(acquisition)]
        assert_phase(group, series, phase)
        assert len({ds.AcquisitionTime for ds in group}) == 1
        moments.append(as_seconds(group[0].AcquisitionTime))
        assert "." in group[0].AcquisitionTime  # syngo's fractional seconds
    assert moments == sorted(moments) and len(set(moments)) == 4
    numbers = Counter(int(ds.InstanceNumber) for ds in values)
    if instance_numbers == "running":
        assert sorted(numbers) == list(range(1, 4 * SLICES + 1))
    else:
        assert numbers == dict.fromkeys(range(1, SLICES + 1), 4)


def test_siemens_multiphase_horos_names(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_siemens_multiphase_zip(series, out / "horos.zip", names="dcm")
    names = sorted(read_dicoms(zip_path))
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
    images = read_dicoms(BUILDERS[builder](series, out / f"canary-{builder}.zip"))
    assert images
    for ds in images.values():
        assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate) == (
            "CANARY^PATIENT", "CANARY-ID-4711", "19010101",
        )  # fmt: skip
    if builder in ("tcia", "refusal"):
        assert all(name.split("/")[1] == "CANARY-ID-4711" for name in images)
