"""The whole series path: upload in chunks, the worker, the real gateway and MRI service, viewer."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from PIL import Image

from mri_service.settings import DEFAULT_MODEL_DIR
from tests.support.processes import Process, start, wait_until_serving
from web.series import worker
from web.series.models import SeriesJob
from web.tests.test_series_services import phantom_zip_bytes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DEFAULT_MODEL_DIR / "model_card.json").is_file(),
        reason="mri_service/models/mri-demo is absent: the end-to-end test runs the shipped models",
    ),
]


@pytest.fixture(scope="module")
def mri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    spool = tmp_path_factory.mktemp("spool")
    process = start("mri", "mri_service", "MRI_", env={"MRI_SPOOL_DIR": str(spool)})
    try:
        wait_until_serving(process, timeout=60)
        yield process
    finally:
        process.terminate()


@pytest.fixture(scope="module")
def gateway_process(mri: Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start(
        "gateway",
        "gateway",
        "GATEWAY_",
        env={
            "GATEWAY_ROUTES": f"mri=series@{mri.address}",
            "GATEWAY_STATE_DIR": str(tmp_path_factory.mktemp("gateway")),
        },
    )
    try:
        wait_until_serving(process)
        yield process
    finally:
        process.terminate()


@pytest.fixture
def series_worker(
    gateway_process: Process, settings: Any, tmp_path: Path, transactional_db: None
) -> Iterator[worker.SeriesWorker]:
    """Runs the in-process worker against the real gateway, as `python -m web` does."""
    settings.GATEWAY_ADDR = gateway_process.address
    settings.MEDIA_ROOT = str(tmp_path / "media")
    thread = worker.SeriesWorker(idle_wait_s=0.1)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def wait_finished(client: Client, job_id: str, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Polls the progress JSON as the page does; returns every answer seen.

    A deadline, not a count of polls: on two loaded cores one job (analysis, DICOM results,
    de-identified copy) took over 30 s, which 600 polls did not cover.
    """
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        progress = client.get(f"/series/{job_id}/progress").json()
        seen.append(progress)
        if progress["status"] in ("done", "failed"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"the job did not finish in {timeout_s:.0f} s: {seen[-1]}")


def test_a_chunked_phantom_series_is_analysed_and_shown_in_the_slice_viewer(
    client_alice: Client, series_worker: worker.SeriesWorker, gateway_process: Process
) -> None:
    data = phantom_zip_bytes()
    step = 128 * 1024
    upload_id, answer = "", None
    for offset in range(0, len(data), step):
        piece = data[offset : offset + step]
        answer = client_alice.post(
            "/series/upload/",
            {"upload_id": upload_id, "offset": offset, "total": len(data), "chunk": _file(piece)},
            headers={"X-Request-ID": "e2e-series-0001"},
        )
        assert answer.status_code in (200, 201), answer.content
        upload_id = answer.json()["upload_id"]
    assert answer is not None and answer.status_code == 201
    job_id = answer.json()["job"]

    seen = wait_finished(client_alice, job_id)
    job = SeriesJob.objects.get(pk=job_id)
    assert job.status == "done", (job.error_code, job.error_message)
    assert job.request_id == "e2e-series-0001" and "[e2e-series-0001]" in gateway_process.log()
    assert job.slice_count == 16 and job.thumbnail_count == 16 and job.demo_model
    assert job.worker == series_worker.worker and job.timings["model_ms"] > 0
    assert {name for s in job.slices for name in s["scores"]} == {"single", "scantype"}
    assert seen[-1]["progress"] == 1.0

    # The study the service read, and each slice's DICOM image in every phase.
    assert job.study["selected_by"] == "folders" and job.study["slice_count"] == 16
    assert [p["phase"] for p in job.study["phases"]] == ["pre", "1st_pass", "2nd_pass", "3rd_pass"]
    assert all(len(s["images"]) == 4 and s["images"][0]["sop_instance_uid"] for s in job.slices)

    html = client_alice.get(f"/series/{job_id}/").content.decode()
    assert "Demo model: not for clinical use." in html
    assert len(re.findall(r'<li class="slice( slice-positive)?"', html)) == 16
    assert html.count("slice-positive") == len(job.positive_slices)
    assert 'data-curve="single"' in html and 'data-curve="scantype"' in html
    assert "data-selected-series" in html and job.study["study_instance_uid"] in html
    for index in job.positive_slices:
        number = job.slices[index]["images"][0]["instance_number"]
        assert f"{index} (InstanceNumber {number})" in html
    # The thumbnails are the service's 128 px previews of the pre-contrast slices.
    thumb = client_alice.get(f"/series/{job_id}/slices/0.png")
    assert thumb.status_code == 200 and thumb["Cache-Control"] == "no-store, private"
    with Image.open(io.BytesIO(thumb.getvalue())) as image:
        assert image.size == (128, 128)
    api = client_alice.get(f"/api/v1/series/{job_id}/").json()
    assert api["status"] == "done" and len(api["slices"]) == 16
    assert api["study"]["phases"][0]["phase"] == "pre"
    assert api["slices"][0]["instance_number"] == job.slices[0]["images"][0]["instance_number"]


def test_a_hostile_zip_is_refused_at_upload_naming_the_entry(
    client_alice: Client, series_worker: worker.SeriesWorker
) -> None:
    # The MRI service's own check (InspectSeries through the gateway), before any job exists.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/evil.dcm", b"DICM")
    answer = client_alice.post("/series/", {"series": _file(buffer.getvalue())})
    assert answer.status_code == 400
    assert "../../etc/evil.dcm" in answer.content.decode()
    assert not SeriesJob.objects.exists()


def _file(data: bytes) -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = "chunk.zip"
    return stream
