"""The series job queue: the jobs due, claiming one, recovering lost ones, retry, delete."""

from __future__ import annotations

import logging
import shutil
import uuid

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from web.series.models import SeriesJob
from web.series.policy import (
    MAX_ATTEMPTS,
    lease_duration,
)
from web.series.storage import (
    REPORT_DIR,
    THUMBNAIL_DIR,
    series_root,
)
from web.series.uploads import (
    _notify_worker,
)

logger = logging.getLogger(__name__)


def _due() -> Q:
    """Matches queued jobs that may start now: not waiting for an automatic retry."""
    return Q(retry_at__isnull=True) | Q(retry_at__lte=timezone.now())


def series_jobs_due() -> QuerySet[SeriesJob]:
    """Returns the queued jobs that may start now, oldest first."""
    return SeriesJob.objects.filter(_due(), status=SeriesJob.Status.QUEUED).order_by("created_at")


def series_job_claim(*, worker: str) -> SeriesJob | None:
    """Claims the oldest due queued job for this worker, or returns None; two never claim one."""
    for job_id in series_jobs_due().values_list("pk", flat=True)[:8]:
        job = series_job_claim_id(job_id=job_id, worker=worker)
        if job is not None:
            return job
    return None


def series_job_claim_id(*, job_id: uuid.UUID, worker: str) -> SeriesJob | None:
    """Claims the due queued job with this id for the worker, or returns None.

    One conditional UPDATE: of two workers racing for the row, only one matches it queued.
    The claim takes a new lease token: whatever an earlier owner still writes is refused.
    """
    now = timezone.now()
    claimed = SeriesJob.objects.filter(_due(), pk=job_id, status=SeriesJob.Status.QUEUED).update(
        status=SeriesJob.Status.RUNNING,
        stage=SeriesJob.Stage.SENDING,
        progress=0.0,
        worker=worker,
        lease_token=uuid.uuid4().hex,
        lease_expires_at=now + lease_duration(),
        heartbeat_at=now,
        started_at=now,
        retry_at=None,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    return SeriesJob.objects.get(pk=job_id) if claimed else None


def series_jobs_recover() -> tuple[int, int]:
    """Requeues running jobs whose lease expired; fails those interrupted MAX_ATTEMPTS times.

    Returns (requeued, failed). A job's lease expires when its worker stopped renewing it
    (a restart, a crash, a hang) for WEB_SERIES_LEASE_SECONDS. Each UPDATE re-checks the
    expiry itself, so a lease renewed meanwhile keeps its job. A requeued job loses its
    token: its old worker's writes no longer match.
    """
    now = timezone.now()
    orphans = SeriesJob.objects.filter(status=SeriesJob.Status.RUNNING).filter(
        Q(lease_expires_at__lt=now)
        # Rows claimed before leases existed: their heartbeat says the same.
        | Q(lease_expires_at__isnull=True, heartbeat_at__lt=now - lease_duration())
        | Q(lease_expires_at__isnull=True, heartbeat_at__isnull=True)
    )
    released = {"lease_token": "", "lease_expires_at": None, "updated_at": now}
    failed = orphans.filter(attempts__gte=MAX_ATTEMPTS).update(
        status=SeriesJob.Status.FAILED,
        stage=SeriesJob.Stage.FINISHED,
        error_code="ABORTED",
        error_message="The analysis was interrupted several times. Please try again later.",
        retryable=True,
        finished_at=now,
        **released,
    )
    requeued = orphans.filter(attempts__lt=MAX_ATTEMPTS).update(
        status=SeriesJob.Status.QUEUED,
        stage=SeriesJob.Stage.WAITING,
        progress=0.0,
        worker="",
        **released,
    )
    if requeued or failed:
        logger.warning("series jobs of a lost worker: %d requeued, %d failed", requeued, failed)
    return requeued, failed


def series_job_retry_refusal(*, job: SeriesJob) -> str:
    """Returns why the job cannot be retried by hand, or "" when it can."""
    if job.status == SeriesJob.Status.QUEUED:
        return "This series is already queued" + (
            " for an automatic retry." if job.retry_at else "."
        )
    if job.status == SeriesJob.Status.RUNNING:
        return "This series is being analysed."
    if job.status != SeriesJob.Status.FAILED:
        return "This series was analysed; only a failed one can be retried."
    if not job.retryable:
        return "The analysis service refused this series for good; trying again would not help."
    if job.upload != SeriesJob.Upload.ORIGINAL:
        return "The stored series is gone; upload it again."
    return ""


def series_job_retry(*, job: SeriesJob) -> SeriesJob:
    """Queues a failed, retryable job again, afresh; any other job comes back unchanged.

    Only a job that still has its original upload can run again (a retryable failure
    keeps it; web/README.md, "What is kept of a study"). The job gets its automatic
    retries and its interruption bound anew.
    """
    if series_job_retry_refusal(job=job):
        return job
    with transaction.atomic():
        SeriesJob.objects.filter(pk=job.pk, status=SeriesJob.Status.FAILED).update(
            status=SeriesJob.Status.QUEUED,
            stage=SeriesJob.Stage.WAITING,
            progress=0.0,
            attempts=0,
            retries=0,
            retry_at=None,
            error_code="",
            error_message="",
            retryable=False,
            updated_at=timezone.now(),
        )
        transaction.on_commit(lambda: _notify_worker(job.pk))
    job.refresh_from_db()
    return job


def series_job_delete(*, job: SeriesJob) -> None:
    """Deletes a job and its stored zip, thumbnails, SR and KOS."""
    job_hex = job.pk.hex
    job.delete()
    (series_root() / job.zip_name).unlink(missing_ok=True)
    shutil.rmtree(series_root() / THUMBNAIL_DIR / job_hex, ignore_errors=True)
    shutil.rmtree(series_root() / REPORT_DIR / job_hex, ignore_errors=True)
