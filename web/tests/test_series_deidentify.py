"""web.series.deidentify on real DICOM: a PACS export of a phantom study and pydicom's own MR."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import UID

from mri_service.phantom import PhantomSpec, generate_series
from mri_service.tests.layouts import Patient, write_pacs_export_zip
from web.series import deidentify

# Unique strings, so that finding one anywhere proves a leak.
CANARY = Patient("CANARY^ZEBRA", "CANARY-ID-7731", "19011231")
CANARY_STRINGS = ("CANARY", "ZEBRA", CANARY.patient_id, CANARY.birth_date)
MR = "1.2.840.10008.5.1.4.1.1.4"


def canary_in(data: bytes) -> list[str]:
    """Returns the canary strings found in data (any case: the text VRs are not all upper)."""
    text = data.upper()
    return [c for c in CANARY_STRINGS if c.encode() in text]


def with_canary_folder(source: Path, target: Path) -> Path:
    """Rewrites a zip with every entry under a folder named after the patient, as PACS do."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            out.writestr(f"{CANARY.patient_id}_{CANARY.name}/{info.filename}", archive.read(info))
    return target


@cache
def canary_export(folder: str) -> Path:
    """Returns a PACS export (DICOMDIR, clutter) of a 16-slice phantom, with the canary."""
    series = generate_series(PhantomSpec(slices=16, size=64, lesion=True, seed=7))
    plain = write_pacs_export_zip(
        series, Path(folder) / "plain.zip", patient=CANARY, dicomdir=True, clutter=True
    )
    return with_canary_folder(plain, Path(folder) / "canary.zip")


@pytest.fixture(scope="module")
def export() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="medimg-deid-") as folder:
        yield canary_export(folder)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


def real_mr() -> Dataset:
    """Returns pydicom's real MR_small.dcm (a Toshiba scanner's header), read afresh."""
    path = get_testdata_file("MR_small.dcm")
    assert isinstance(path, str)
    return pydicom.dcmread(path)


def real_mr_with_canary() -> bytes:
    """Returns pydicom's real MR_small.dcm carrying the canary where hospitals put it."""
    ds = real_mr()
    ds.PatientName, ds.PatientID = CANARY.name, CANARY.patient_id
    ds.PatientBirthDate = CANARY.birth_date
    ds.OtherPatientIDs = "CANARY-ID-7731-OLD"
    ds.ImageComments = "follow-up of Zebra, see CANARY-ID-7731"
    ds.InstitutionName = "Canary Hospital"
    ds.ReferringPhysicianName = "CANARY^DOCTOR"
    ds.AccessionNumber = "ACC-7731"
    private = ds.private_block(0x0029, "ACME 1.1", create=True)
    private.add_new(0x10, "LO", "CANARY^ZEBRA")
    item = Dataset()
    item.PatientID = CANARY.patient_id  # nested, as OtherPatientIDsSequence holds it
    ds.ReferencedPatientSequence = [item]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_the_source_really_carries_the_canary(export: Path) -> None:
    found = members(export)
    (dicomdir,) = (data for name, data in found.items() if name.rsplit("/", 1)[-1] == "DICOMDIR")
    assert canary_in(dicomdir)
    assert sum(bool(canary_in(data)) for data in found.values()) >= 64


def test_a_study_copy_holds_every_image_and_nothing_of_the_patient(
    export: Path, tmp_path: Path
) -> None:
    copy = deidentify.deidentify_study_zip(export, tmp_path / "copy.zip", seed="s")
    source = members(export)
    images = {}
    for data in source.values():
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except pydicom.errors.InvalidDicomError:
            continue
        if ds.get("SOPClassUID") == MR:
            images[str(ds.SOPInstanceUID)] = ds
    assert copy.kept == len(images) == 64
    # Left out: the DICOMDIR, README, thumbnail, .DS_Store and the AppleDouble files.
    assert copy.left_out == len(source) - 64
    kept = members(tmp_path / "copy.zip")
    assert copy.size_bytes == (tmp_path / "copy.zip").stat().st_size
    for name, data in kept.items():
        assert canary_in(name.encode()) == [] and canary_in(data) == [], name
        ds = pydicom.dcmread(io.BytesIO(data))
        original = images[str(ds.SOPInstanceUID)]
        # Retain UIDs: the study, series, instance and frame of reference as they were.
        assert name == f"{original.SeriesInstanceUID}/{original.SOPInstanceUID}.dcm"
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
            assert ds[keyword].value == original[keyword].value
        assert ds.PatientIdentityRemoved == "YES"
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
            "113100",
            "113110",
            "113107",
        ]
        assert {c.CodingSchemeDesignator for c in ds.DeidentificationMethodCodeSequence} == {"DCM"}
        assert ds.PatientBirthDate == "" and "SeriesDescription" not in ds
        # Pixels untouched.
        assert ds.PixelData == original.PixelData
    # One seed: one pseudonym and one date shift for the whole study.
    datasets = [pydicom.dcmread(io.BytesIO(d)) for d in kept.values()]
    assert len({str(ds.PatientName) for ds in datasets}) == 1
    assert len({ds.PatientID for ds in datasets}) == 1 and datasets[0].PatientID
    assert len({ds.StudyDate for ds in datasets}) == 1
    assert datasets[0].StudyDate < next(iter(images.values())).StudyDate


def test_another_seed_gives_another_pseudonym_and_the_same_seed_the_same(
    export: Path, tmp_path: Path
) -> None:
    def first(seed: str, name: str) -> Dataset:
        deidentify.deidentify_study_zip(export, tmp_path / name, seed=seed)
        return pydicom.dcmread(io.BytesIO(next(iter(members(tmp_path / name).values()))))

    one, again, other = first("a", "1.zip"), first("a", "2.zip"), first("b", "3.zip")
    assert (one.PatientID, one.StudyDate) == (again.PatientID, again.StudyDate)
    assert one.PatientID != other.PatientID


def test_a_real_scanners_header_loses_every_identifier_in_every_place() -> None:
    data = real_mr_with_canary()
    assert canary_in(data)
    original = pydicom.dcmread(io.BytesIO(data))
    cleaned = deidentify.deidentify_part10(data, seed="s")
    assert canary_in(cleaned) == [] and b"ACC-7731" not in cleaned
    ds = pydicom.dcmread(io.BytesIO(cleaned))
    assert ds.SOPInstanceUID == original.SOPInstanceUID
    assert ds.StudyInstanceUID == original.StudyInstanceUID
    assert not any(element.tag.is_private for element in ds)
    assert "ImageComments" not in ds and "ReferencedPatientSequence" not in ds
    # StudyID repeats the PatientID in this real file: emptied (Z), as are these.
    assert (ds.StudyID, ds.AccessionNumber, ds.PatientBirthDate, ds.PatientSex) == ("", "", "", "")
    assert "PatientWeight" not in ds and "DeviceSerialNumber" not in ds
    assert ds.InstitutionName != original.InstitutionName
    assert ds.PixelData == original.PixelData


def test_text_that_quotes_the_patient_is_emptied_even_where_the_profile_keeps_it() -> None:
    ds = pydicom.dcmread(io.BytesIO(real_mr_with_canary()))
    ds.SOPClassUID = deidentify.COMPREHENSIVE_3D_SR  # descriptors kept (Clean Descriptors)
    ds.SeriesDescription = "Report for Zebra"
    ds.ContributionDescription = "NOT FOR CLINICAL USE"
    ds.StudyDescription = "Mamma routine"  # the hospital's own: removed
    deidentify.deidentify_dataset(ds, seed="s")
    assert not ds.SeriesDescription and ds.ContributionDescription == "NOT FOR CLINICAL USE"
    assert "StudyDescription" not in ds
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
        "113100",
        "113110",
        "113107",
        "113104",
        "113105",
    ]


@pytest.mark.parametrize(
    "data",
    [b"", b"plain text", b"\0" * 128 + b"DICM" + b"\xff" * 10],
    ids=["empty", "text", "junk"],
)
def test_what_is_not_dicom_is_refused_and_never_echoed(data: bytes) -> None:
    with pytest.raises(deidentify.NotDeidentifiable) as refused:
        deidentify.deidentify_part10(data, seed="s")
    assert "plain" not in str(refused.value)


def test_objects_that_may_show_burned_in_text_are_left_out(tmp_path: Path) -> None:
    screenshot = pydicom.dcmread(io.BytesIO(real_mr_with_canary()))
    screenshot.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    screenshot.file_meta.MediaStorageSOPClassUID = screenshot.SOPClassUID
    marked = pydicom.dcmread(io.BytesIO(real_mr_with_canary()))
    marked.BurnedInAnnotation = "YES"
    marked.SOPInstanceUID = marked.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    with zipfile.ZipFile(tmp_path / "in.zip", "w") as archive:
        for name, ds in (("a", screenshot), ("b", marked)):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            archive.writestr(name, buffer.getvalue())
        archive.writestr("c.dcm", real_mr_with_canary())
    copy = deidentify.deidentify_study_zip(tmp_path / "in.zip", tmp_path / "out.zip", seed="s")
    assert (copy.kept, copy.left_out) == (1, 2)
