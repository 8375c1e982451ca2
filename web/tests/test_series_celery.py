"""Series jobs on Celery: a real redis-server, a real Celery worker, the same claim and service."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.worker import WorkController

from mri_service.settings import DEFAULT_MODEL_DIR
from tests.support.processes import Process
from tests.support.redis import redis_server
from web.accounts.models import User
from web.config.celery import app
from web.series import services, tasks, worker
from web.series.models import SeriesJob
from web.tests.postgres import free_port
from web.tests.test_series_e2e import gateway_process, mri  # noqa: F401  (fixtures)
from web.tests.test_series_services import phantom_zip_bytes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Runs a throwaway redis-server on a free loopback port; stops it, leaving no process."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def celery_worker(
    redis_url: str, settings: Any, tmp_path: Path, transactional_db: None
) -> Iterator[WorkController]:
    """Runs a real Celery worker (a thread of this process) on the Redis server, mode celery."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    saved = {name: app.conf[name] for name in ("broker_url", "result_backend")}
    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    os.environ[worker.MODE_ENV] = "celery"
    try:
        with start_worker(
            app, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=15
        ) as running:
            yield running
    finally:
        os.environ.pop(worker.MODE_ENV, None)
        app.close()  # drops the connections to this server; the next use reconnects
        app.conf.update(saved)


def wait_finished(job: SeriesJob, timeout_s: float = 60.0) -> SeriesJob:
    """Reloads the job until it is done or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.finished:
            return job
        time.sleep(0.05)
    raise AssertionError(f"the job did not finish: {job.status} {job.stage}")


def test_with_celery_an_uploaded_job_runs_once_and_a_second_delivery_skips_it(
    alice: User, settings: Any, celery_worker: WorkController
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"  # nothing listens: a retryable failure
    settings.WEB_SERIES_RETRIES = 0  # failed at once (the retries: test_series_recovery.py)
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    assert job.status == "queued"

    job = wait_finished(job, timeout_s=20)
    assert (job.status, job.error_code, job.retryable) == ("failed", "UNAVAILABLE", True)
    assert job.attempts == 1 and job.worker.startswith("celery:")

    again = tasks.series_job_process.delay(str(job.pk))
    assert again.get(timeout=10) == "skipped"
    job.refresh_from_db()
    assert job.attempts == 1 and job.status == "failed"


def test_with_celery_the_job_of_a_lost_worker_is_requeued_and_run_by_a_redelivery(
    alice: User, settings: Any, celery_worker: WorkController
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"
    settings.WEB_SERIES_RETRIES = 0
    os.environ[worker.MODE_ENV] = "off"  # queue it without a message, as if it was lost
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    os.environ[worker.MODE_ENV] = "celery"
    SeriesJob.objects.filter(pk=job.pk).update(
        status="running",
        worker="celery:lost",
        attempts=1,
        lease_token="lost",
        lease_expires_at=job.created_at - services.lease_duration(),
    )

    outcome = tasks.series_job_process.delay(str(job.pk)).get(timeout=20)
    job.refresh_from_db()
    assert outcome == "failed" and job.error_code == "UNAVAILABLE"
    assert job.attempts == 2 and job.worker.startswith("celery:") and job.worker != "celery:lost"


@pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model_card.json").is_file(),
    reason="mri_service/models/mri-demo is absent: this test runs the shipped models",
)
def test_with_celery_a_phantom_series_is_analysed_by_the_real_gateway_and_mri_service(
    alice: User,
    settings: Any,
    celery_worker: WorkController,
    gateway_process: Process,  # noqa: F811
) -> None:
    settings.GATEWAY_ADDR = gateway_process.address
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))

    job = wait_finished(job, timeout_s=120)  # one job on two loaded cores
    assert job.status == "done", (job.error_code, job.error_message)
    assert job.slice_count == 16 and job.thumbnail_count == 16 and job.demo_model
    assert job.attempts == 1 and job.worker.startswith("celery:")


def test_with_celery_a_transient_failure_is_retried_by_delayed_messages_up_to_the_bound(
    alice: User, settings: Any, celery_worker: WorkController
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"  # down all along
    settings.WEB_SERIES_RETRIES = 2
    settings.WEB_SERIES_RETRY_BASE_SECONDS = 1
    started = time.monotonic()
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))

    job = wait_finished(job, timeout_s=60)
    # Each retry ran from a message sent with its backoff as countdown: 1 s, then 2 s.
    assert time.monotonic() - started >= 3 * (1 - services.RETRY_JITTER)
    assert (job.status, job.error_code, job.retryable, job.retries) == (
        "failed",
        "UNAVAILABLE",
        True,
        2,
    )
    assert job.upload == SeriesJob.Upload.ORIGINAL and job.worker.startswith("celery:")


def test_with_celery_the_beat_sweep_takes_over_a_job_whose_lease_expired_within_seconds(
    alice: User, settings: Any, series_gateway: str, celery_worker: WorkController
) -> None:
    settings.WEB_SERIES_LEASE_SECONDS = 2
    settings.WEB_SERIES_HEARTBEAT_SECONDS = 1
    os.environ[worker.MODE_ENV] = "off"  # its message went with the worker that died
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    os.environ[worker.MODE_ENV] = "celery"
    dead = services.series_job_claim_id(job_id=job.pk, worker="celery:dead")
    assert dead is not None
    died = time.monotonic()
    # What `celery beat` does every WEB_SERIES_SWEEP_SECONDS: nothing while the lease holds.
    assert tasks.series_jobs_sweep.delay().get(timeout=10) == 0
    job.refresh_from_db()
    assert (job.status, job.worker) == ("running", "celery:dead")
    while tasks.series_jobs_sweep.delay().get(timeout=10) == 0:
        assert time.monotonic() - died < 30, "the lease did not expire within 30 s"
        time.sleep(0.5)

    job = wait_finished(job, timeout_s=60)
    assert job.status == "done", (job.error_code, job.error_message)
    assert job.worker.startswith("celery:") and job.worker != "celery:dead"
    assert job.attempts == 2 and time.monotonic() - died < 60
