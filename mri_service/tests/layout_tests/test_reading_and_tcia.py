"""The builders read the phantom back alike from any source; the NBIA download of TCIA."""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MRImageStorage,
)

from mri_service.domain import PHASES, PRE
from mri_service.phantom import PhantomSeries, write_series_zip
from mri_service.tests import layouts
from mri_service.tests.layout_tests.checks import (
    IMAGE_KEYWORDS,
    SIZE,
    SLICES,
    SPEC,
    as_seconds,
    assert_phase,
    grouped_by,
    image_times,
    pydicom_testdata,
    stacked_pixels,
    zip_entries,
)
from mri_service.tests.layouts import (
    DUKE,
    DUKE_PATIENT,
    FOURTH_PASS,
    TCIA_METADATA_COLUMNS,
)

# --- reading the source --------------------------------------------------------------------


def test_a_phantom_and_its_zip_load_alike(series: PhantomSeries, breastwise: Path) -> None:
    from_series, from_zip = layouts.load_phases(series), layouts.load_phases(breastwise)
    assert tuple(from_series) == tuple(from_zip) == PHASES
    for phase in PHASES:
        assert list(from_series[phase]) == list(from_zip[phase])
        assert np.array_equal(stacked_pixels(list(from_zip[phase].values())), series.phases[phase])
        assert len({ds.SeriesInstanceUID for ds in from_zip[phase].values()}) == 1


def test_shuffled_names_load_in_anatomical_order(series: PhantomSeries, out: Path) -> None:
    shuffled = write_series_zip(series, out / "shuffled.zip", shuffle_names=True, seed=3)
    phases = layouts.load_phases(shuffled)
    assert list(phases[PRE]) != sorted(phases[PRE])
    assert np.array_equal(stacked_pixels(list(phases[PRE].values())), series.phases[PRE])


def test_a_zip_without_every_phase_is_refused(breastwise: Path, out: Path) -> None:
    kept = [(n, d) for n, d in zip_entries(breastwise).items() if "/3rd_pass/" not in n]
    with pytest.raises(ValueError, match="3rd_pass"):
        layouts.load_phases(layouts.write_zip(out / "three.zip", kept))


def test_images_carry_what_a_real_mr_image_carries(tcia_images: dict[str, Dataset]) -> None:
    real = pydicom.dcmread(pydicom_testdata("MR_small.dcm"))
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
    groups = grouped_by(tcia_images, "SeriesDescription")
    dynamic = [*PHASES, FOURTH_PASS]
    assert set(groups) == {*(DUKE.dynamic[p] for p in dynamic), DUKE.t1, DUKE.localizer}
    for phase in dynamic:
        assert_phase(
            groups[DUKE.dynamic[phase]], series, {FOURTH_PASS: "3rd_pass"}.get(phase, phase)
        )
    firsts = [groups[DUKE.dynamic[phase]][0] for phase in dynamic]
    assert [ds.SeriesNumber for ds in firsts] == [3, 4, 5, 6, 7]
    for column in range(3):
        moments = [as_seconds(image_times(ds)[column]) for ds in firsts]
        assert all(b > a for a, b in itertools.pairwise(moments))
        assert [b - a for a, b in itertools.pairwise(moments[1:])] == [90.0] * 3
    for group in (groups[DUKE.dynamic[phase]] for phase in dynamic):
        assert len({(image_times(ds), ds.SeriesInstanceUID, ds.SeriesNumber) for ds in group}) == 1
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
    groups = grouped_by(tcia_images, "SeriesDescription")
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
    entries = zip_entries(tcia)
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
    names = list(zip_entries(path))
    assert names[:2] == ["manifest-1600000000000/metadata.csv", "manifest-1600000000000/LICENSE"]
    assert all(n.startswith("manifest-1600000000000/Duke-Breast-Cancer-MRI/") for n in names[2:])
    table = zip_entries(path)["manifest-1600000000000/metadata.csv"].decode()
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
