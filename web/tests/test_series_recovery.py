"""Series jobs that recover: leases taken over by another worker, automatic retries, retry API."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from web.accounts.models import User
from web.gateway_client import GatewayError
from web.series import processing, services, worker
from web.series.models import SeriesJob
from web.series.storage import series_root
from web.tests.postgres import free_port
from web.tests.series_stack import series_stack
from web.tests.test_series_services import analysis, phantom_zip_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("series_gateway")]

# Generous for two loaded cores: a takeover needs the lease to expire, a sweep and a run.
TAKEOVER_LIMIT_S = 30.0


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def short_lease(settings: Any) -> None:
    """A lease of 2 s renewed every second, swept every second: takeovers within seconds."""
    settings.WEB_SERIES_LEASE_SECONDS = 2
    settings.WEB_SERIES_HEARTBEAT_SECONDS = 1
    settings.WEB_SERIES_SWEEP_SECONDS = 1


@pytest.fixture
def running_worker(transactional_db: None) -> Iterator[worker.SeriesWorker]:
    thread = worker.SeriesWorker(idle_wait_s=0.1)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop(timeout_s=60)
    assert not thread.is_alive()


def api_client(user: User) -> Client:
    return Client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})


def wait_for(
    job: SeriesJob, done: Callable[[SeriesJob], bool], *, timeout_s: float = 60.0
) -> SeriesJob:
    """Reloads the job until `done` says so; fails with where it stands after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if done(job):
            return job
        time.sleep(0.05)  # the worker's writes share SQLite with these reads: not too often
    raise AssertionError(f"timed out: {job.status} {job.stage} retries={job.retries}")


def queue(user: User) -> SeriesJob:
    return services.series_job_create(user=user, upload=io.BytesIO(phantom_zip_bytes()))


def done_logs(caplog: pytest.LogCaptureFixture, job: SeriesJob) -> list[str]:
    done = f"series job {job.pk} done"
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == processing.logger.name and r.getMessage().startswith(done)
    ]


# --- leases ---------------------------------------------------------------------------------


def test_a_claim_takes_a_lease_that_its_worker_renews_and_others_cannot(
    alice: User, settings: Any
) -> None:
    queue(alice)
    job = services.series_job_claim(worker="w1")
    assert job is not None and len(job.lease_token) == 32
    assert job.lease_expires_at is not None
    lease = (job.lease_expires_at - job.started_at).total_seconds()  # type: ignore[operator]
    assert lease == pytest.approx(settings.WEB_SERIES_LEASE_SECONDS, abs=0.5)
    # A live lease is not swept; an expired one is, and its token goes with it.
    assert services.series_jobs_recover() == (0, 0)
    SeriesJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    assert services.series_jobs_recover() == (1, 0)
    again = services.series_job_claim(worker="w2")
    assert again is not None and again.pk == job.pk and again.lease_token != job.lease_token
    assert again.attempts == 2
    # The first worker's writes no longer match the row: its result is refused.
    with pytest.raises(services.LeaseLost):
        services.series_job_record(job=job, result=analysis(16, {3}))
    again.refresh_from_db()
    assert (again.status, again.worker, again.positive_slices) == ("running", "w2", [])


def test_the_job_of_a_worker_that_died_is_taken_over_within_seconds_and_completes_once(
    alice: User,
    short_lease: None,
    transactional_db: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=processing.logger.name)
    caplog.set_level(logging.INFO, logger=worker.logger.name)
    # Claimed by a worker that then died: its lease is never renewed. The live worker
    # starts after the claim, and finds no queued job: only the sweep can hand it over.
    job = queue(alice)
    dead = services.series_job_claim_id(job_id=job.pk, worker="host:1:dead")
    assert dead is not None
    died = time.monotonic()
    running_worker = worker.SeriesWorker(idle_wait_s=0.1)
    running_worker.start()
    try:
        job = wait_for(job, lambda j: j.status == "done", timeout_s=TAKEOVER_LIMIT_S)
    finally:
        running_worker.stop(timeout_s=60)
    took_s = time.monotonic() - died
    assert took_s >= 1.0, "taken over before the lease expired"
    assert took_s < TAKEOVER_LIMIT_S
    # One takeover: a second would mean the live worker lost its own lease (the worker's
    # log, in the message, says why: a database error mid-run leaves the job to the sweep).
    worker_log = [r.getMessage() for r in caplog.records if r.name == worker.logger.name]
    assert (job.worker, job.attempts, job.slice_count) == (running_worker.worker, 2, 16), worker_log
    assert job.upload == SeriesJob.Upload.DEIDENTIFIED
    assert len(done_logs(caplog, job)) == 1

    # The dead worker comes back (it was only paused) and runs its stale claim to the end:
    # the analysis is made, but it writes nothing over the new owner's results or files.
    stored = (series_root() / job.zip_name).read_bytes()
    thumbnail = (series_root() / "thumbnails" / job.pk.hex / "0.png").read_bytes()
    kept = SeriesJob.objects.values().get(pk=job.pk)
    stale = services.series_job_run(job=dead)
    assert (stale.status, stale.worker) == ("done", running_worker.worker)
    assert SeriesJob.objects.values().get(pk=job.pk) == kept
    assert (series_root() / job.zip_name).read_bytes() == stored
    assert (series_root() / "thumbnails" / job.pk.hex / "0.png").read_bytes() == thumbnail
    assert len(done_logs(caplog, job)) == 1


def test_a_job_interrupted_max_attempts_times_fails_and_can_be_retried_through_the_api(
    alice: User,
) -> None:
    job = queue(alice)
    for attempt in range(1, services.MAX_ATTEMPTS + 1):
        claimed = services.series_job_claim(worker=f"w{attempt}")
        assert claimed is not None and claimed.attempts == attempt
        SeriesJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
        services.series_jobs_recover()
    job.refresh_from_db()
    assert (job.status, job.error_code, job.retryable) == ("failed", "ABORTED", True)
    answer = api_client(alice).post(f"/api/v1/series/{job.pk}/retry")
    assert answer.status_code == 202, answer.content
    assert answer.json()["status"] == "queued" and answer["Location"].endswith(f"/{job.pk}/")
    job.refresh_from_db()
    assert (job.status, job.attempts, job.retries, job.error_code) == ("queued", 0, 0, "")


# --- automatic retries ----------------------------------------------------------------------


def test_the_backoff_doubles_up_to_its_cap_with_some_jitter(settings: Any) -> None:
    settings.WEB_SERIES_RETRY_BASE_SECONDS = 10
    settings.WEB_SERIES_RETRY_MAX_SECONDS = 45
    for retry, full in ((1, 10), (2, 20), (3, 40), (4, 45), (9, 45)):
        for _ in range(20):
            seconds = services.retry_delay(retry).total_seconds()
            assert full * (1 - services.RETRY_JITTER) <= seconds <= full


def test_with_the_services_down_then_up_the_job_retries_with_backoff_and_completes(
    alice: User, settings: Any, client_alice: Client, running_worker: worker.SeriesWorker
) -> None:
    port = free_port()
    settings.GATEWAY_ADDR = f"127.0.0.1:{port}"  # nothing listens yet: UNAVAILABLE
    settings.WEB_SERIES_RETRIES = 6
    settings.WEB_SERIES_RETRY_BASE_SECONDS = 1
    settings.WEB_SERIES_RETRY_MAX_SECONDS = 4
    job = queue(alice)  # not checked (the service is down): queued for the analysis to check
    assert job.study == {}

    job = wait_for(job, lambda j: j.retries == 1 and j.status == "queued")
    assert job.retry_at is not None and job.error_code == "UNAVAILABLE"
    assert job.upload == SeriesJob.Upload.ORIGINAL
    assert (series_root() / job.zip_name).read_bytes() == phantom_zip_bytes()
    # The page's poll, the page itself and the API say when and which attempt comes.
    retry = client_alice.get(f"/series/{job.pk}/progress").json()["retry"]
    assert (retry["attempt"], retry["of"], retry["error"]["code"]) == (2, 7, "UNAVAILABLE")
    assert 0 <= retry["in_seconds"] <= 1
    assert retry["message"] in ("Retrying in 1 s (attempt 2 of 7)", "Retrying now (attempt 2 of 7)")
    page = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert "could not take the series (UNAVAILABLE). Retrying" in page
    assert "(attempt 2 of 7)." in page and "data-retry" in page
    api = api_client(alice).get(f"/api/v1/series/{job.pk}/").json()
    assert api["status"] == "queued" and api["retry"]["attempt"] == 2 and api["error"] is None

    # The second backoff is about twice the first.
    job = wait_for(job, lambda j: j.retries == 2 and j.status == "queued")
    assert job.retry_at is not None
    second = (job.retry_at - job.updated_at).total_seconds()
    assert 2 * (1 - services.RETRY_JITTER) - 0.1 <= second <= 2.1

    with series_stack(gateway_port=port):  # the services come up
        job = wait_for(job, lambda j: j.finished, timeout_s=90)
    assert job.status == "done", (job.error_code, job.error_message)
    assert 2 <= job.retries <= 6 and job.slice_count == 16 and job.retry_at is None
    assert job.upload == SeriesJob.Upload.DEIDENTIFIED
    assert client_alice.get(f"/series/{job.pk}/progress").json()["retry"] is None


def test_after_its_last_retry_the_job_fails_keeps_its_original_and_the_api_retries_it(
    alice: User,
    settings: Any,
    client_alice: Client,
    series_gateway: str,
    running_worker: worker.SeriesWorker,
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"
    settings.WEB_SERIES_RETRIES = 2
    settings.WEB_SERIES_RETRY_BASE_SECONDS = 1
    job = queue(alice)
    started = time.monotonic()

    job = wait_for(job, lambda j: j.finished)
    assert time.monotonic() - started >= (1 + 2) * (1 - services.RETRY_JITTER)
    assert (job.status, job.error_code, job.retryable, job.retries) == (
        "failed",
        "UNAVAILABLE",
        True,
        2,
    )
    assert job.upload == SeriesJob.Upload.ORIGINAL
    assert (series_root() / job.zip_name).read_bytes() == phantom_zip_bytes()
    client = api_client(alice)
    body = client.get(f"/api/v1/series/{job.pk}/").json()
    assert body["error"] == {"code": "UNAVAILABLE", "message": job.error_message, "retryable": True}
    assert body["retry"] is None
    page = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert "3 (retried automatically)" in page and "Try again" in page

    settings.GATEWAY_ADDR = series_gateway  # the service is back; a person retries
    answer = client.post(f"/api/v1/series/{job.pk}/retry")
    assert answer.status_code == 202 and answer.json()["status"] in ("queued", "running")
    job = wait_for(job, lambda j: j.finished)
    assert (job.status, job.retries, job.upload) == ("done", 0, SeriesJob.Upload.DEIDENTIFIED)


def test_a_study_refused_for_good_is_not_retried_and_loses_its_upload(
    alice: User, settings: Any, media: Path
) -> None:
    settings.WEB_SERIES_RETRIES = 3
    job = queue(alice)
    claimed = services.series_job_claim(worker="w1")
    assert claimed is not None
    refused = GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT, "the study has no DCE series", reason="", request_id=""
    )
    job = services.series_job_fail(job=claimed, error=refused)
    assert (job.status, job.retries, job.retryable, job.upload) == (
        "failed",
        0,
        False,
        SeriesJob.Upload.DELETED,
    )
    assert not (series_root() / job.zip_name).exists()


# --- POST /api/v1/series/{id}/retry -----------------------------------------------------------


def failed(user: User, **fields: Any) -> SeriesJob:
    job = queue(user)
    values = {"status": "failed", "error_code": "UNAVAILABLE", "retryable": True, **fields}
    SeriesJob.objects.filter(pk=job.pk).update(**values)
    job.refresh_from_db()
    return job


def test_the_retry_endpoint_queues_a_failed_retryable_job_of_the_caller(alice: User) -> None:
    job = failed(alice, retries=4, attempts=1)
    answer = api_client(alice).post(f"/api/v1/series/{job.pk}/retry")
    assert answer.status_code == 202
    body = answer.json()
    assert (body["id"], body["status"], body["error"], body["retry"]) == (
        str(job.pk),
        "queued",
        None,
        None,
    )
    job.refresh_from_db()
    assert (job.status, job.retries, job.attempts) == ("queued", 0, 0)


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body["error"].items() if k != "request_id"}


def test_the_retry_endpoint_answers_the_same_404_for_anybody_elses_job_and_a_missing_one(
    alice: User, bob: User
) -> None:
    job = failed(alice)
    client = api_client(bob)
    others = client.post(f"/api/v1/series/{job.pk}/retry")
    missing = client.post(f"/api/v1/series/{uuid.uuid4()}/retry")
    assert others.status_code == missing.status_code == 404
    assert without_request_id(others.json()) == without_request_id(missing.json())
    assert without_request_id(others.json()) == {"code": "NOT_FOUND", "message": "No such series."}
    job.refresh_from_db()
    assert job.status == "failed"
    assert Client().post(f"/api/v1/series/{job.pk}/retry").status_code == 401


@pytest.mark.parametrize(
    ("fields", "reason", "words"),
    [
        ({"status": "queued", "error_code": ""}, "SERIES_NOT_FAILED", "already queued."),
        ({"status": "queued", "retry_at": timezone.now()}, "SERIES_NOT_FAILED", "automatic retry"),
        ({"status": "running"}, "SERIES_NOT_FAILED", "being analysed"),
        ({"status": "done", "error_code": ""}, "SERIES_NOT_FAILED", "only a failed one"),
        ({"retryable": False}, "SERIES_NOT_RETRYABLE", "refused this series for good"),
        ({"upload": "deleted"}, "SERIES_NOT_RETRYABLE", "upload it again"),
    ],
)
def test_the_retry_endpoint_refuses_a_job_that_is_not_failed_or_not_retryable_with_409(
    alice: User, fields: dict[str, Any], reason: str, words: str
) -> None:
    job = failed(alice, **fields)
    answer = api_client(alice).post(f"/api/v1/series/{job.pk}/retry")
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert (error["code"], error["reason"]) == ("FAILED_PRECONDITION", reason)
    assert words in error["message"]
    job.refresh_from_db()
    assert job.status == fields.get("status", "failed")  # unchanged


def test_the_retry_operation_is_in_the_openapi_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    operation = schema["paths"]["/api/v1/series/{job_id}/retry"]["post"]
    assert operation["operationId"] == "series_retry"
    assert {"202", "401", "404", "409"} <= set(operation["responses"])
    assert "SERIES_NOT_RETRYABLE" in operation["responses"]["409"]["description"]
    job = schema["components"]["schemas"]["SeriesJob"]
    assert "retry" in job["properties"]
    assert set(schema["components"]["schemas"]["Retry"]["properties"]) == {
        "at",
        "in_seconds",
        "attempt",
        "of",
        "message",
        "error",
    }
