"""The MRI service with its shipped demo models, behind the gateway, as real processes."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pydicom
import pytest
from medimg.v1 import model_info_pb2
from medimg.v1 import series_analysis_service_pb2 as pb
from medimg.v1 import series_analysis_service_pb2_grpc as pb_grpc

from mri_service.phantom import PhantomSeries, PhantomSpec, generate_series, write_series_zip
from mri_service.settings import DEFAULT_MODEL_DIR
from tests.support.processes import (
    ROOT,
    Process,
    start_gateway,
    start_mri,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DEFAULT_MODEL_DIR / "model_card.json").is_file(),
        reason="mri_service/models/mri-demo is absent: the end-to-end tests run the shipped models",
    ),
]

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def mri(spool: Path) -> Iterator[Process]:
    process = start_mri(spool, timeout=60)
    yield process
    assert process.terminate() == 0, process.log()


@pytest.fixture(scope="module")
def gateway(mri: Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start_gateway(f"mri=series@{mri.address}", tmp_path_factory.mktemp("gateway"))
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def phantom() -> PhantomSeries:
    return generate_series(PhantomSpec(slices=24, size=128, lesion=True, seed=424242))


@pytest.fixture(scope="module")
def series_zip(phantom: PhantomSeries, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_series_zip(phantom, tmp_path_factory.mktemp("series") / "case.zip")


def analyse(address: str, data: bytes, disease: str = "mri") -> pb.AnalyzeSeriesResponse:
    def messages() -> Iterator[pb.AnalyzeSeriesRequest]:
        meta = pb.SeriesUploadMetadata(disease=disease, total_size_bytes=len(data))
        yield pb.AnalyzeSeriesRequest(metadata=meta)
        for start_at in range(0, len(data), CHUNK):
            yield pb.AnalyzeSeriesRequest(chunk_data=data[start_at : start_at + CHUNK])

    with grpc.insecure_channel(address) as channel:
        response: pb.AnalyzeSeriesResponse = pb_grpc.SeriesAnalysisServiceStub(
            channel
        ).AnalyzeSeries(messages(), timeout=120)
    return response


def test_the_gateway_returns_the_lesions_slices_from_the_demo_models(
    gateway: Process, mri: Process, series_zip: Path, phantom: PhantomSeries
) -> None:
    response = analyse(gateway.address, series_zip.read_bytes())
    truth = {i for i, positive in enumerate(phantom.positive) if positive}
    flagged = set(response.positive_slice_indices)
    assert response.slice_count == len(phantom.positive)
    assert response.demo_model
    # A demo model on a held-out phantom: most lesion slices found, few false alarms.
    assert len(flagged & truth) >= 0.6 * len(truth)
    assert len(flagged - truth) <= 3
    direct = analyse(mri.address, series_zip.read_bytes())
    response.ClearField("timings")
    direct.ClearField("timings")
    assert response == direct


def test_a_hostile_zip_through_the_gateway_is_refused_and_leaves_nothing_behind(
    gateway: Process, series_zip: Path, spool: Path, tmp_path: Path
) -> None:
    import zipfile

    hostile = tmp_path / "slip.zip"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("../../etc/evil.dcm", b"DICM")
    with pytest.raises(grpc.RpcError) as refused:
        analyse(gateway.address, hostile.read_bytes())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "../../etc/evil.dcm" in (refused.value.details() or "")
    assert list(spool.iterdir()) == []
    assert analyse(gateway.address, series_zip.read_bytes()).slice_count > 0


def test_model_info_through_the_gateway_describes_the_series_analyser(gateway: Process) -> None:
    with grpc.insecure_channel(gateway.address) as channel:
        response = pb_grpc.SeriesAnalysisServiceStub(channel).GetSeriesModelInfo(
            pb.GetSeriesModelInfoRequest(disease="mri"), timeout=10
        )
    assert response.model.kind == model_info_pb2.MODEL_KIND_SERIES_ANALYZER
    assert response.model.backend == "embedded"
    assert "not for clinical use" in response.model.description


def test_medimg_analyze_series_prints_the_flagged_slices_and_the_strip(
    gateway: Process, series_zip: Path
) -> None:
    command = ["--gateway", gateway.address, "analyze-series", str(series_zip)]
    result = subprocess.run(
        [sys.executable, "-m", "medimg_cli", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{series_zip}: 24 slices, ")
    assert any(line.startswith("single ") for line in lines)
    assert any(line.startswith("scantype ") for line in lines)
    assert any(line.startswith("flagged ") for line in lines)
    assert "not for clinical use" in result.stdout
    assert "uploaded; analysing" in result.stderr


def test_medimg_analyze_series_writes_the_dicom_report_and_key_images_of_the_study(
    gateway: Process, series_zip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    command = ["--gateway", gateway.address, "analyze-series", str(series_zip)]
    result = subprocess.run(
        [sys.executable, "-m", "medimg_cli", *command, "--dicom-out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(series_zip) as archive:
        first = next(name for name in archive.namelist() if name.endswith(".dcm"))
        study_uid = pydicom.dcmread(io.BytesIO(archive.read(first))).StudyInstanceUID
    report = pydicom.dcmread(out / "report-sr.dcm")
    assert report.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert report.StudyInstanceUID == study_uid
    assert f"wrote {out / 'report-sr.dcm'}" in result.stdout
    flagged = any(line.startswith("flagged ") for line in result.stdout.splitlines())
    assert (out / "key-images-kos.dcm").exists() == flagged
