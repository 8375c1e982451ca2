"""The DICOM results of AnalyzeSeries, read back field by field and validated with dciodvfy.

The studies are the phantom re-packaged as a PACS export and a GE multiphase series
(`layouts`), analysed by the shipped demo models through the real servicer; the reports
are read back with highdicom and pydicom and checked against the input's own headers,
then validated by David Clunie's `dciodvfy` (Debian's dicom3tools), which nobody here
wrote: 0 errors and 0 warnings.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import highdicom as hd
import pydicom
import pytest
from medimg.v1 import series_analysis_service_pb2 as pb
from pydicom.sr.codedict import codes

from mri_service import domain
from mri_service.backends.embedded import EmbeddedBackend
from mri_service.model_card import load_model_card
from mri_service.phantom import PhantomSeries, PhantomSpec, generate_series
from mri_service.report import KEY_IMAGES_SERIES_NUMBER, NOT_FOR_CLINICAL_USE
from mri_service.settings import DEFAULT_MODEL_DIR
from mri_service.tests import layouts
from mri_service.tests.doubles import mean_backends
from mri_service.tests.layouts import CANARY
from mri_service.tests.test_servicer import analyse, serving
from tests.support.install import installed_tool

CARD = load_model_card(DEFAULT_MODEL_DIR)
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"


@pytest.fixture(scope="module")
def dciodvfy() -> str:
    """Returns dciodvfy's path, installing dicom3tools when it is missing."""
    return installed_tool(
        "install_dicom_tools.sh", "dciodvfy validates the DICOM results", timeout_s=600
    )


@pytest.fixture(scope="module")
def series() -> PhantomSeries:
    # Seed 11 puts a lesion the demo models flag in this small study.
    return generate_series(PhantomSpec(slices=12, size=64, lesion=True, seed=11))


@pytest.fixture(scope="module")
def backends() -> dict[str, EmbeddedBackend]:
    return {name: EmbeddedBackend(DEFAULT_MODEL_DIR, name) for name in domain.MODEL_NAMES}


@pytest.fixture(scope="module")
def pacs_zip(series: PhantomSeries, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pacs")
    return layouts.write_pacs_export_zip(series, folder / "export.zip", patient=CANARY)


def headers(zip_path: Path) -> dict[str, pydicom.Dataset]:
    """Returns the input's DICOM headers by SOPInstanceUID."""
    found: dict[str, pydicom.Dataset] = {}
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            if data[128:132] == b"DICM":
                ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
                if "SOPInstanceUID" in ds and ds.SOPClassUID != "1.2.840.10008.1.3.10":
                    found[ds.SOPInstanceUID] = ds
    return found


async def analysed(
    backends: dict[str, EmbeddedBackend],
    zip_path: Path,
    spool: Path,
    *,
    dicom_reports: bool = False,
) -> pb.AnalyzeSeriesResponse:
    async with serving(backends, spool, model_card=CARD) as stub:  # type: ignore[arg-type]
        return await analyse(stub, zip_path.read_bytes(), dicom_reports=dicom_reports)


def report_of(data: bytes) -> tuple[hd.sr.Comprehensive3DSR, hd.sr.MeasurementReport]:
    """Returns the SR read back, and its content as the TID 1500 report it must be."""
    sr = hd.sr.srread(io.BytesIO(data))
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    return sr, cast(hd.sr.MeasurementReport, sr.content)


def validate(dciodvfy: str, data: bytes, folder: Path, name: str) -> None:
    """Asserts that dciodvfy finds neither an error nor a warning in one Part 10 file."""
    path = folder / name
    path.write_bytes(data)
    done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
    findings = [
        line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("E", "W"))
    ]
    assert done.returncode == 0 and not findings, "\n".join(findings)


def algorithm_items(item: pydicom.Dataset) -> dict[str, list[str]]:
    """Returns the TID 4019 text items under a content item, by concept code value."""
    found: dict[str, list[str]] = {}
    for child in item.ContentSequence:
        if child.ValueType == "TEXT":
            code = child.ConceptNameCodeSequence[0].CodeValue
            found.setdefault(code, []).append(str(child.TextValue))
    return found


def referenced_uids(ds: pydicom.Dataset) -> Iterator[str]:
    """Yields every ReferencedSOPInstanceUID anywhere in a dataset."""
    for element in ds.iterall():
        if element.keyword == "ReferencedSOPInstanceUID":
            yield str(element.value)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


async def test_the_report_holds_each_flagged_slice_with_both_models_and_the_fused_decision(
    backends: dict[str, EmbeddedBackend], pacs_zip: Path, spool: Path
) -> None:
    answer = await analysed(backends, pacs_zip, spool, dicom_reports=True)
    sources = headers(pacs_zip)
    flagged = [s for s in answer.slices if s.positive]
    assert flagged, "the study must have a flagged slice for this test to say anything"

    sr, content = report_of(answer.dicom_reports.measurement_report)
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR
    assert sr.StudyInstanceUID == answer.study.study_instance_uid
    assert sr.SeriesInstanceUID not in {s.SeriesInstanceUID for s in sources.values()}
    # The report goes back to the PACS: it carries the patient its study belongs to.
    assert (str(sr.PatientName), str(sr.PatientID), str(sr.PatientBirthDate)) == (
        CANARY.name,
        CANARY.patient_id,
        CANARY.birth_date,
    )
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "COMPLETE",
        "UNVERIFIED",
        "PRELIMINARY",
    )
    assert sr.SeriesDescription.endswith(NOT_FOR_CLINICAL_USE)
    equipment = sr.ContributingEquipmentSequence[0]
    assert equipment.Manufacturer == "medimg"
    assert "not for clinical use" in equipment.ContributionDescription
    assert equipment.SoftwareVersions == str(CARD.version)
    device = content.get_observer_contexts(observer_type=codes.DCM.Device)[0]
    attributes = device.observer_identifying_attributes
    assert isinstance(attributes, hd.sr.DeviceObserverIdentifyingAttributes)
    assert NOT_FOR_CLINICAL_USE in str(attributes.model_name)

    groups = content.get_planar_roi_measurement_groups()
    assert len(groups) == len(flagged)
    for group, finding in zip(groups, flagged, strict=True):
        images = {image.phase: image for image in finding.images}
        assert group.finding_type == codes.SCT.Tumor
        assert [e.value for e in group.get_qualitative_evaluations()] == [codes.SCT.Present]
        region = group.roi
        assert region is not None
        pre = images[domain.PRE]
        source = region.ContentSequence[0].ReferencedSOPSequence[0]
        assert source.ReferencedSOPInstanceUID == pre.sop_instance_uid
        assert f"image {pre.instance_number}" in str(group.tracking_identifier)
        scores = {score.model_name: score.probability for score in finding.model_scores}
        measurements = group.get_measurements(name=codes.DCM.Probability)
        assert len(measurements) == len(domain.MODEL_NAMES)
        for model, measurement in zip(domain.MODEL_NAMES, measurements, strict=True):
            algorithm = algorithm_items(measurement[0])
            assert algorithm["111001"] == [f"{CARD.name}/{model}"]  # Algorithm Name
            assert algorithm["111003"] == [str(CARD.version)]  # Algorithm Version
            assert NOT_FOR_CLINICAL_USE in algorithm["111002"]  # Algorithm Parameters
            assert measurement.value == pytest.approx(scores[model], abs=1e-6)
            read = {
                str(image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                for image in measurement.referenced_images
            }
            assert read == {images[phase].sop_instance_uid for phase in domain.MODEL_PHASES[model]}

    # Every image the models read is the report's evidence, and nothing else is.
    evidence = {
        str(instance.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    read_images = {image.sop_instance_uid for s in answer.slices for image in s.images}
    assert evidence == read_images
    assert set(referenced_uids(sr)) <= set(sources)


async def test_the_key_images_are_every_phase_of_the_flagged_slices(
    backends: dict[str, EmbeddedBackend], pacs_zip: Path, spool: Path
) -> None:
    answer = await analysed(backends, pacs_zip, spool, dicom_reports=True)
    sources = headers(pacs_zip)
    kos = pydicom.dcmread(io.BytesIO(answer.dicom_reports.key_images))
    assert kos.SOPClassUID == KEY_OBJECT_SELECTION
    assert kos.Modality == "KO" and kos.SeriesNumber == KEY_IMAGES_SERIES_NUMBER
    assert kos.StudyInstanceUID == answer.study.study_instance_uid
    title = kos.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("113000", "DCM")  # Of Interest
    keys = [
        str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for item in kos.ContentSequence
        if item.ValueType == "IMAGE"
    ]
    expected = [image.sop_instance_uid for s in answer.slices if s.positive for image in s.images]
    assert keys == expected
    for uid in keys:
        assert sources[uid].SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
    assert kos.SeriesDescription.endswith(NOT_FOR_CLINICAL_USE)


async def test_both_documents_pass_dciodvfy_with_no_error_and_no_warning(
    backends: dict[str, EmbeddedBackend],
    series: PhantomSeries,
    pacs_zip: Path,
    dciodvfy: str,
    tmp_path: Path,
    spool: Path,
) -> None:
    multiphase = layouts.write_ge_multiphase_zip(series, tmp_path / "ge.zip", patient=CANARY)
    for name, zip_path in {"pacs": pacs_zip, "multiphase": multiphase}.items():
        answer = await analysed(backends, zip_path, spool, dicom_reports=True)
        assert answer.positive_slice_indices
        validate(dciodvfy, answer.dicom_reports.measurement_report, tmp_path, f"{name}-sr.dcm")
        validate(dciodvfy, answer.dicom_reports.key_images, tmp_path, f"{name}-kos.dcm")


async def test_a_study_with_nothing_flagged_gets_an_empty_report_and_no_key_images(
    pacs_zip: Path, dciodvfy: str, tmp_path: Path, spool: Path
) -> None:
    # The demo models flag most slices of a small phantom; the mean-intensity double, whose
    # probabilities stay under one half on these slices, flags none.
    doubles = mean_backends(CARD.input_size)
    answer = await analysed(doubles, pacs_zip, spool, dicom_reports=True)  # type: ignore[arg-type]
    assert not answer.positive_slice_indices
    assert answer.dicom_reports.key_images == b""
    _, content = report_of(answer.dicom_reports.measurement_report)
    assert content.get_planar_roi_measurement_groups() == []
    (group,) = content.get_image_measurement_groups()
    assert [e.value for e in group.get_qualitative_evaluations()] == [codes.SCT.Absent]
    read = {str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for i in group.source_images}
    assert read == {image.sop_instance_uid for s in answer.slices for image in s.images}
    validate(dciodvfy, answer.dicom_reports.measurement_report, tmp_path, "clear-sr.dcm")


async def test_the_same_study_and_models_give_the_same_uids_and_none_unless_asked(
    backends: dict[str, EmbeddedBackend], pacs_zip: Path, spool: Path
) -> None:
    first = await analysed(backends, pacs_zip, spool, dicom_reports=True)
    again = await analysed(backends, pacs_zip, spool, dicom_reports=True)
    for field in ("measurement_report", "key_images"):
        uids = [
            pydicom.dcmread(io.BytesIO(getattr(answer.dicom_reports, field))).SOPInstanceUID
            for answer in (first, again)
        ]
        assert uids[0] == uids[1]
    plain = await analysed(backends, pacs_zip, spool)
    assert not plain.HasField("dicom_reports")
    assert CANARY.patient_id.encode() not in plain.SerializeToString()
