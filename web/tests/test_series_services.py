"""Series services and the worker against the database: uploads, the queue, recovery, results."""

from __future__ import annotations

import io
import tempfile
import threading
import zipfile
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import pytest
from django.utils import timezone
from PIL import Image

from mri_service.phantom import PhantomSpec, generate_series, write_series_zip
from servicekit.request_context import reset_request_id, set_request_id
from web.accounts.models import User
from web.gateway_client import (
    GatewayError,
    SelectedPhase,
    SeriesAnalysis,
    SkippedFile,
    SliceFinding,
    SliceImage,
    SliceScore,
    StudySummary,
    UnusedSeries,
)
from web.series import services, worker
from web.series.models import SeriesJob
from web.series.storage import series_root
from web.tests.postgres import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("series_gateway")]


@cache
def phantom_zip_bytes() -> bytes:
    """Returns a small generated series zip: 16 slices of 64 x 64 pixels, one lesion."""
    series = generate_series(PhantomSpec(slices=16, size=64, lesion=True, seed=7))
    with tempfile.TemporaryDirectory(prefix="medimg-series-") as folder:
        return write_series_zip(series, Path(folder) / "case.zip").read_bytes()


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def stored_files(media: Path) -> list[str]:
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


PHASES = ("pre", "1st_pass", "2nd_pass", "3rd_pass")


def png(size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def study(count: int) -> StudySummary:
    return StudySummary(
        study_instance_uid="1.2.826.0.1.3680043.8.498.1",
        phases=tuple(
            SelectedPhase(
                phase=phase,
                series_instance_uid=f"1.2.826.0.1.3680043.8.498.1.{number}",
                series_description=f"ax dyn {phase}",
                series_number=number,
                temporal_position=None,
                image_count=count,
            )
            for number, phase in enumerate(PHASES, start=3)
        ),
        unused_series=(
            UnusedSeries("1.2.826.0.1.3680043.8.498.1.1", "localizer", 1, "MR", 3, "a localiser"),
        ),
        skipped_files=(SkippedFile("case/DICOMDIR", "a DICOMDIR"),),
        slice_count=count,
        ordered_by="position",
        selected_by="series",
    )


def images(index: int) -> tuple[SliceImage, ...]:
    # InstanceNumbers that are not the index: the pre phase's count down from 100.
    return tuple(
        SliceImage(
            phase, f"1.2.826.0.1.{p}.{index}", 100 - index if p == 0 else None, -40.0 + index
        )
        for p, phase in enumerate(PHASES)
    )


def analysis(count: int, positive: set[int]) -> SeriesAnalysis:
    return SeriesAnalysis(
        disease="mri",
        positive_slice_indices=tuple(sorted(positive)),
        slices=tuple(
            SliceFinding(
                i,
                i in positive,
                (SliceScore("single", 0.9 if i in positive else 0.1), SliceScore("scantype", 0.2)),
                images(i),
            )
            for i in range(count)
        ),
        slice_count=count,
        model_name="mri-demo",
        model_version="1",
        demo_model=True,
        upload_ms=1.0,
        prepare_ms=2.0,
        model_ms=3.0,
        request_id="rid-1",
        elapsed_ms=10.0,
        study=study(count),
        previews=tuple(png() for _ in range(count)),
    )


@pytest.mark.postgres
def test_a_whole_zip_is_stored_privately_and_queued_with_the_request_id(
    alice: User, media: Path
) -> None:
    token = set_request_id("series-req-0001")
    try:
        job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    finally:
        reset_request_id(token)
    assert (job.status, job.stage, job.request_id) == ("queued", "waiting", "series-req-0001")
    assert stored_files(media) == [f"series/zips/{job.pk.hex}.zip"]
    assert (media / "series/zips" / f"{job.pk.hex}.zip").stat().st_mode & 0o077 == 0
    assert job.zip_bytes == len(phantom_zip_bytes())


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"", 400, "SERIES_EMPTY"),
        (b"not a zip at all", 400, "SERIES_NOT_ZIP"),
        (b"\x89PNG\r\n\x1a\n" + b"0" * 64, 400, "SERIES_NOT_ZIP"),
        (b"PK\x03\x04 truncated", 400, "SERIES_NOT_ZIP"),
    ],
)
def test_it_refuses_a_bad_upload_and_leaves_no_row_and_no_file(
    alice: User, media: Path, data: bytes, status: int, reason: str
) -> None:
    with pytest.raises(services.UploadRefused) as refused:
        services.series_job_create(user=alice, upload=io.BytesIO(data))
    assert (refused.value.http_status, refused.value.reason) == (status, reason)
    assert SeriesJob.objects.count() == 0 and stored_files(media) == []


def test_it_refuses_a_zip_over_the_cap_and_leaves_nothing(
    alice: User, media: Path, settings: Any
) -> None:
    settings.WEB_MAX_SERIES_BYTES = 100_000
    with pytest.raises(services.UploadRefused) as refused:
        services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    assert refused.value.http_status == 413 and "limit" in refused.value.message
    assert SeriesJob.objects.count() == 0 and stored_files(media) == []


def test_chunks_append_resume_from_the_stored_offset_and_the_last_one_creates_the_job(
    alice: User, media: Path
) -> None:
    data = phantom_zip_bytes()
    third = len(data) // 3
    first = services.series_chunk_append(
        user=alice,
        upload_id="",
        offset=0,
        total=len(data),
        chunk=io.BytesIO(data[:third]),
        chunk_size=third,
    )
    assert (first.received, first.job) == (third, None)
    # A chunk sent twice (its answer was lost) is refused with where to resume.
    with pytest.raises(services.UploadRefused) as again:
        services.series_chunk_append(
            user=alice,
            upload_id=first.upload_id,
            offset=0,
            total=len(data),
            chunk=io.BytesIO(data[:third]),
            chunk_size=third,
        )
    assert (again.value.http_status, again.value.received) == (409, third)
    assert services.upload_received(user=alice, upload_id=first.upload_id) == third
    last = services.series_chunk_append(
        user=alice,
        upload_id=first.upload_id,
        offset=third,
        total=len(data),
        chunk=io.BytesIO(data[third:]),
        chunk_size=len(data) - third,
    )
    assert last.job is not None and last.received == len(data)
    assert (series_root() / last.job.zip_name).read_bytes() == data
    assert stored_files(media) == [last.job.zip_name.join(["series/", ""])]


def test_bob_cannot_append_to_alices_upload(alice: User, bob: User, media: Path) -> None:
    first = services.series_chunk_append(
        user=alice,
        upload_id="",
        offset=0,
        total=10,
        chunk=io.BytesIO(b"PK\x03\x04"),
        chunk_size=4,
    )
    with pytest.raises(services.UploadRefused) as refused:
        services.series_chunk_append(
            user=bob,
            upload_id=first.upload_id,
            offset=4,
            total=10,
            chunk=io.BytesIO(b"123456"),
            chunk_size=6,
        )
    assert refused.value.http_status == 404
    assert services.upload_received(user=alice, upload_id=first.upload_id) == 4


def test_a_chunk_past_the_declared_size_removes_the_partial_upload(
    alice: User, media: Path
) -> None:
    first = services.series_chunk_append(
        user=alice,
        upload_id="",
        offset=0,
        total=10,
        chunk=io.BytesIO(b"PK\x03\x04"),
        chunk_size=4,
    )
    with pytest.raises(services.UploadRefused) as refused:
        services.series_chunk_append(
            user=alice,
            upload_id=first.upload_id,
            offset=4,
            total=10,
            chunk=io.BytesIO(b"0123456789"),
            chunk_size=10,
        )
    assert refused.value.http_status == 413
    assert stored_files(media) == [] and SeriesJob.objects.count() == 0


@pytest.mark.postgres
def test_a_claim_takes_the_oldest_queued_job_once(alice: User) -> None:
    older = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    newer = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    claimed = services.series_job_claim(worker="w1")
    assert claimed is not None and claimed.pk == older.pk
    assert (claimed.status, claimed.attempts, claimed.worker) == ("running", 1, "w1")
    second = services.series_job_claim(worker="w2")
    assert second is not None and second.pk == newer.pk
    assert services.series_job_claim(worker="w3") is None


@pytest.mark.postgres
def test_jobs_of_a_dead_worker_are_requeued_or_failed_after_their_attempts(alice: User) -> None:
    requeue = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    spent = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    alive = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    expired = timezone.now() - timedelta(seconds=1)
    SeriesJob.objects.filter(pk=requeue.pk).update(
        status="running", attempts=1, lease_token="t1", lease_expires_at=expired
    )
    SeriesJob.objects.filter(pk=spent.pk).update(
        status="running", attempts=services.MAX_ATTEMPTS, lease_expires_at=expired
    )
    SeriesJob.objects.filter(pk=alive.pk).update(
        status="running", lease_expires_at=timezone.now() + services.lease_duration()
    )
    assert services.series_jobs_recover() == (1, 1)
    states = {j.pk: (j.status, j.error_code) for j in SeriesJob.objects.all()}
    assert states == {
        requeue.pk: ("queued", ""),
        spent.pk: ("failed", "ABORTED"),
        alive.pk: ("running", ""),
    }
    requeue.refresh_from_db()
    assert (requeue.lease_token, requeue.lease_expires_at, requeue.worker) == ("", None, "")
    spent.refresh_from_db()
    assert spent.retryable and services.series_job_retry(job=spent).status == "queued"


def test_with_the_gateway_down_and_no_retries_left_the_job_fails_retryably_and_keeps_its_zip(
    alice: User, settings: Any, media: Path
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"
    settings.WEB_SERIES_RETRIES = 0
    # The upload cannot be checked either: it is kept and queued unchecked.
    queued = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    assert (queued.status, queued.study) == ("queued", {})
    job = services.series_job_claim(worker="w1")
    assert job is not None
    job = services.series_job_run(job=job)
    assert (job.status, job.error_code, job.retryable) == ("failed", "UNAVAILABLE", True)
    assert "unavailable" in job.error_message
    assert (series_root() / job.zip_name).is_file()


def test_recorded_findings_keep_each_models_probability_the_study_and_the_thumbnails(
    alice: User, media: Path
) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    job = services.series_job_record(job=job, result=analysis(16, {6, 7}))
    assert (job.status, job.progress, job.positive_slices, job.thumbnail_count) == (
        "done",
        1.0,
        [6, 7],
        16,
    )
    job.refresh_from_db()
    assert job.slices[6] == {
        "index": 6,
        "positive": True,
        "scores": {"single": 0.9, "scantype": 0.2},
        "images": [
            {
                "phase": "pre",
                "sop_instance_uid": "1.2.826.0.1.0.6",
                "instance_number": 94,
                "position_mm": -34.0,
            },
            *(
                {
                    "phase": phase,
                    "sop_instance_uid": f"1.2.826.0.1.{p}.6",
                    "instance_number": None,
                    "position_mm": -34.0,
                }
                for p, phase in enumerate(PHASES[1:], start=1)
            ),
        ],
    }
    assert job.study["study_instance_uid"] == "1.2.826.0.1.3680043.8.498.1"
    assert [(p["phase"], p["series_number"]) for p in job.study["phases"]] == [
        ("pre", 3),
        ("1st_pass", 4),
        ("2nd_pass", 5),
        ("3rd_pass", 6),
    ]
    assert job.study["unused_series"][0]["reason"] == "a localiser"
    assert job.study["skipped_files"] == [{"path": "case/DICOMDIR", "reason": "a DICOMDIR"}]
    # The thumbnails are the service's previews, stored as they came.
    stored = series_root() / "thumbnails" / job.pk.hex / "0.png"
    assert stored.read_bytes() == png()
    services.series_job_delete(job=job)
    assert stored_files(media) == []


def test_previews_that_are_not_png_are_not_stored(alice: User, media: Path) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    result = analysis(4, {1})
    result = SeriesAnalysis(**{**result.__dict__, "previews": (png(), b"<svg/>", png(), png())})
    job = services.series_job_record(job=job, result=result)
    assert (job.status, job.thumbnail_count) == ("done", 0)
    assert stored_files(media) == [job.zip_name.join(["series/", ""])]


def test_the_upload_is_checked_by_the_mri_service_and_its_study_kept_with_the_job(
    alice: User, media: Path
) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    # The phantom is laid out in the folders pre/, 1st_pass/, 2nd_pass/ and 3rd_pass/.
    assert job.status == "queued" and job.study["selected_by"] == "folders"
    assert [p["phase"] for p in job.study["phases"]] == list(PHASES)
    assert job.study["slice_count"] == 16 and job.study["study_instance_uid"]
    assert all(p["image_count"] == 16 for p in job.study["phases"])


def test_the_analysis_brings_the_thumbnails_and_each_slices_dicom_identity(
    alice: User, media: Path
) -> None:
    services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    job = services.series_job_claim(worker="w1")
    assert job is not None
    job = services.series_job_run(job=job)
    assert (job.status, job.slice_count, job.thumbnail_count) == ("done", 16, 16)
    with Image.open(series_root() / "thumbnails" / job.pk.hex / "3.png") as thumbnail:
        assert thumbnail.size == (services.THUMBNAIL_PX, services.THUMBNAIL_PX)
    first = job.slices[0]["images"]
    assert [image["phase"] for image in first] == list(PHASES)
    assert all(image["sop_instance_uid"] for image in first)
    assert isinstance(first[0]["instance_number"], int)
    assert job.study["phases"][0]["phase"] == "pre"


class RefusingGateway:
    """Plays the gateway client: InspectSeries ends with the given status."""

    def __init__(self, code: grpc.StatusCode, details: str = "", reason: str = "") -> None:
        self.code, self.details, self.reason = code, details, reason
        self.calls: list[dict[str, Any]] = []

    def inspect_series(self, **call: Any) -> Any:
        self.calls.append({k: v for k, v in call.items() if k != "chunks"})
        sent = b"".join(call["chunks"])
        assert sent == phantom_zip_bytes()
        raise GatewayError(self.code, self.details, reason=self.reason, request_id="r-1")


def test_a_refusal_at_upload_is_a_400_with_the_services_message_and_reason(
    alice: User, media: Path
) -> None:
    gateway = RefusingGateway(
        grpc.StatusCode.INVALID_ARGUMENT,
        "the study has no dynamic contrast-enhanced series",
        "SERIES_NO_DCE",
    )
    with pytest.raises(services.UploadRefused) as refused:
        services.series_job_create(
            user=alice,
            upload=io.BytesIO(phantom_zip_bytes()),
            gateway=gateway,  # type: ignore[arg-type]
        )
    assert (refused.value.http_status, refused.value.reason) == (400, "SERIES_NO_DCE")
    assert refused.value.message == "The study has no dynamic contrast-enhanced series."
    assert gateway.calls == [
        {"disease": "mri", "total_size_bytes": len(phantom_zip_bytes()), "preview_size_px": 0}
    ]
    assert SeriesJob.objects.count() == 0 and stored_files(media) == []


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
    ],
)
def test_a_check_that_cannot_be_made_queues_the_upload_unchecked(
    alice: User, media: Path, code: grpc.StatusCode
) -> None:
    job = services.series_job_create(
        user=alice,
        upload=io.BytesIO(phantom_zip_bytes()),
        gateway=RefusingGateway(code),  # type: ignore[arg-type]
    )
    assert (job.status, job.study) == ("queued", {})
    assert stored_files(media) == [f"series/zips/{job.pk.hex}.zip"]


def test_the_worker_thread_picks_up_a_queued_job_and_stops_cleanly(
    alice: User, settings: Any, transactional_db: None
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"
    settings.WEB_SERIES_RETRIES = 0
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    thread = worker.SeriesWorker(idle_wait_s=0.05)
    thread.start()
    try:
        for _ in range(200):
            job.refresh_from_db()
            if job.finished:
                break
            threading.Event().wait(0.05)
    finally:
        thread.stop()
    assert not thread.is_alive()
    assert (job.status, job.error_code, job.worker) == ("failed", "UNAVAILABLE", thread.worker)


def test_a_hostile_zip_is_refused_at_upload_with_no_job(alice: User, media: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/evil.dcm", b"DICM")
    with pytest.raises(services.UploadRefused, match=r"\.\./\.\./etc/evil\.dcm") as refused:
        services.series_job_create(user=alice, upload=buffer)
    assert refused.value.http_status == 400
    assert not SeriesJob.objects.exists()
    assert [p for p in media.rglob("*") if p.is_file()] == []


def test_only_the_serving_process_starts_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["/srv/web/__main__.py"])
    assert worker.serving_process()
    monkeypatch.setenv(worker.MODE_ENV, "off")
    assert not worker.serving_process()
    monkeypatch.delenv(worker.MODE_ENV)
    monkeypatch.setattr("sys.argv", ["web/manage.py", "migrate"])
    assert not worker.serving_process()
