"""Ingestion of DICOM nobody here wrote: pydicom's bundled MR files and its real CD tree.

pydicom ships real files offline: MR slices in every transfer syntax, and
`dicomdirtests`, a CD export with a DICOMDIR and three patients (CR, CT and MR studies,
files named by number in folders that mean nothing). None holds a breast DCE study, so
what is checked is that each is read from its headers as its authors wrote it and
refused for what it really is, naming the series, never the patient.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from mri_service.errors import SeriesRejected
from mri_service.ingest import IngestLimits, open_study
from mri_service.ingest.dicom import decode_slice
from mri_service.ingest.redact import Redactor
from mri_service.ingest.study import SkippedFile
from mri_service.ingest.survey import Surveyed, survey_file

LIMITS = IngestLimits()
BUNDLED_MR = [
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_padded.dcm",
    "examples_overlay.dcm",
]
# The patient ids of the CD tree: a refusal must not say them.
CD_PATIENT_IDS = ("77654033", "98890234", "12345678")


def _bundled(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not bundled with pydicom"
    return Path(path)


def _cd_tree() -> Path:
    return _bundled("DICOMDIR").parent


def _zip_folder(folder: Path, zip_path: Path, keep: set[str] | None = None) -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if path.is_file() and (keep is None or relative in keep):
                archive.write(path, f"CD/{relative}")
    return zip_path


@pytest.mark.parametrize("name", BUNDLED_MR)
def test_the_survey_reads_a_real_header_without_its_pixels(name: str) -> None:
    data = _bundled(name).read_bytes()
    asked: list[int] = []

    def read(count: int) -> bytes:
        asked.append(count)
        return data[:count]

    surveyed = survey_file(f"study/{name}", read, LIMITS, Redactor())

    reference = pydicom.dcmread(_bundled(name), stop_before_pixels=True)
    assert isinstance(surveyed, Surveyed)
    found = surveyed.header
    assert found.sop_instance_uid == reference.SOPInstanceUID
    assert found.series_uid == reference.SeriesInstanceUID
    assert (found.rows, found.columns) == (reference.Rows, reference.Columns)
    assert found.instance_number == reference.get("InstanceNumber")
    assert found.modality == "MR"
    assert found.patient_key and str(reference.PatientID) not in repr(found)
    if len(data) > 64 * 1024:
        assert max(asked) < len(data) / 4  # the header only, not the pixel data


@pytest.mark.parametrize("name", BUNDLED_MR)
@pytest.mark.filterwarnings("ignore:The pixel data is .* excess padding:UserWarning")
def test_a_real_slice_decodes_to_pydicoms_own_pixels(name: str) -> None:
    path = _bundled(name)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )

    pixels = decode_slice(name, path.read_bytes())

    np.testing.assert_allclose(pixels, expected)


def test_the_real_dicomdir_and_readme_of_a_cd_are_skipped_for_what_they_are() -> None:
    tree = _cd_tree()

    assert survey_file("CD/DICOMDIR", lambda n: b"", LIMITS, Redactor()) == SkippedFile(
        "CD/DICOMDIR", "a DICOMDIR (the index of a CD or PACS export)"
    )
    implicit = (tree / "DICOMDIR-implicit").read_bytes()
    assert survey_file(
        "CD/DICOMDIR-implicit", lambda n: implicit[:n], LIMITS, Redactor()
    ) == SkippedFile("CD/DICOMDIR-implicit", "a DICOMDIR (the index of a CD or PACS export)")
    readme = (tree / "README.txt").read_bytes()
    assert survey_file("CD/README.txt", lambda n: readme[:n], LIMITS, Redactor()) == SkippedFile(
        "CD/README.txt", "not a DICOM file"
    )


def _refusal(zip_path: Path) -> SeriesRejected:
    with pytest.raises(SeriesRejected) as caught:
        open_study(zip_path, LIMITS)
    for patient_id in CD_PATIENT_IDS:
        assert patient_id not in caught.value.message
    return caught.value


def test_a_whole_cd_of_three_patients_is_refused_as_more_than_one_patient(tmp_path: Path) -> None:
    refused = _refusal(_zip_folder(_cd_tree(), tmp_path / "cd.zip"))

    assert refused.reason == "SERIES_MULTIPLE_PATIENTS"
    assert refused.message.startswith("the upload holds images of more than one patient: ")


def test_one_patient_with_three_mr_studies_is_refused_as_more_than_one_study(
    tmp_path: Path,
) -> None:
    refused = _refusal(_zip_folder(_cd_tree() / "98892003", tmp_path / "patient.zip"))

    assert refused.reason == "SERIES_MULTIPLE_STUDIES"
    assert "belongs to another study than" in refused.message


def test_a_real_mr_study_without_a_dynamic_acquisition_is_refused_listing_its_series(
    tmp_path: Path,
) -> None:
    tree = _cd_tree()
    study = {"98892003/MR1/5641", "98892003/MR2/6273", "98892003/MR2/6605", "98892003/MR2/6935"}
    study |= {f"98892003/MR700/{n}" for n in ("4467", "4528", "4558", "4588", "4618", "4648")}
    study |= {"98892003/MR700/4678", "DICOMDIR", "README.txt"}

    refused = _refusal(_zip_folder(tree, tmp_path / "study.zip", keep=study))

    assert refused.reason == "SERIES_NO_DCE"
    message = refused.message
    assert "among the study's 3 series" in message
    assert "'FAST LOCALIZER' (MR, 1 images: not a dynamic acquisition" in message
    assert "'T/S/C RF FAST PILOT' (MR, 3 images: not a dynamic acquisition" in message
    assert "'ANGIO Projected from   C' (MR, 7 images" in message


def test_a_real_ct_export_with_its_dicomdir_is_refused_as_not_mr(tmp_path: Path) -> None:
    refused = _refusal(_zip_folder(_cd_tree() / "TINY_ALPHA", tmp_path / "ct.zip"))

    assert refused.reason == "SERIES_NO_DCE"
    assert "series 1 (no description) (CT, 50 images: modality CT, not MR)" in refused.message
