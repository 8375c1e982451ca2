"""Celery tasks of the series app: run one queued job by id, and sweep for lost jobs.

Used when WEB_SERIES_WORKER=celery (web/config/celery.py). The database row stays the
queue: a task runs a job only after the same atomic claim the thread worker makes, so
a message delivered twice never runs a job twice.
"""

from __future__ import annotations

import logging
import uuid

from celery import Task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from web.config.celery import app
from web.series import services
from web.series.models import SeriesJob
from web.series.worker import worker_name

logger = logging.getLogger(__name__)

# A redelivered message whose job still looks alive is checked again this many times, a
# lease apart: once the lease expired, the recovery rule requeues (or fails) the job.
MAX_RECHECKS = services.MAX_ATTEMPTS + 2
SWEEP_BATCH = 200
DATABASE_RETRY_S = 1.0


@app.task(bind=True, name="series.process_job", max_retries=MAX_RECHECKS)
def series_job_process(self: Task[[str | None], str], job_id: str | None = None) -> str:
    """Claims and runs the job with this id (or the oldest queued one); returns its outcome.

    "done", "failed" or "queued" (an automatic retry is due later) after a run,
    "skipped" when there was nothing to claim, "deferred" when the job waits for its
    retry time (a message that came early is sent again for then). A job still running
    under another worker is checked again later: if that worker was lost, its lease
    expires and the recovery rule requeues the job for this task.
    """
    try:
        job = _claim(self, job_id)
    except OperationalError:
        # The claim is one atomic UPDATE: when the database refuses it for a moment
        # (a locked SQLite table, PostgreSQL restarting), nothing changed; try again soon
        # rather than leave the job to the next sweep.
        logger.warning("series job %s: the database refused the claim; retrying", job_id)
        raise self.retry(countdown=DATABASE_RETRY_S) from None
    if job is None:
        return _defer(job_id) if job_id is not None else "skipped"
    return str(services.series_job_run(job=job).status)


def _defer(job_id: str) -> str:
    """Sends the message again for the job's retry time when it came early, else skips."""
    retry_at = (
        SeriesJob.objects.filter(pk=uuid.UUID(job_id), status=SeriesJob.Status.QUEUED)
        .values_list("retry_at", flat=True)
        .first()
    )
    if retry_at is None or retry_at <= timezone.now():
        return "skipped"
    enqueue(job_id=uuid.UUID(job_id), delay_s=(retry_at - timezone.now()).total_seconds())
    return "deferred"


def _claim(task: Task[[str | None], str], job_id: str | None) -> SeriesJob | None:
    """Returns the claimed job, None when there is nothing to claim; may ask for a recheck."""
    worker = f"celery:{worker_name()}"
    if job_id is None:
        job = services.series_job_claim(worker=worker)
    else:
        pk = uuid.UUID(job_id)
        job = services.series_job_claim_id(job_id=pk, worker=worker)
        if job is None and _running(pk):
            requeued, _failed = services.series_jobs_recover()
            job = services.series_job_claim_id(job_id=pk, worker=worker) if requeued else None
            if job is None and _running(pk):
                raise task.retry(countdown=settings.WEB_SERIES_LEASE_SECONDS)
    return job


def _running(pk: uuid.UUID) -> bool:
    return SeriesJob.objects.filter(pk=pk, status=SeriesJob.Status.RUNNING).exists()


@app.task(name="series.jobs_sweep")
def series_jobs_sweep() -> int:
    """Requeues jobs of lost workers, then queues a task for every due job; returns how many.

    Runs when a worker starts and every WEB_SERIES_SWEEP_SECONDS under `celery beat`: a
    job whose worker died is taken over once its lease expired, and a job whose message
    was lost (Redis restarted, the web process could not reach it) still runs.
    """
    services.series_jobs_recover()
    job_ids = list(services.series_jobs_due().values_list("pk", flat=True)[:SWEEP_BATCH])
    for pk in job_ids:
        enqueue(job_id=pk)
    return len(job_ids)


def enqueue(*, job_id: uuid.UUID | None = None, delay_s: float = 0.0) -> None:
    """Sends a job to the Celery workers `delay_s` from now; on a broker outage, to the sweep.

    The message asks for no stored result: the job's row is its outcome, and a sender that
    waits for none must not subscribe to one either. With a result, Redis's result
    backend subscribes on every send and, Redis being down, retried that for about 20 s
    before giving up: the upload that queued the job hung that long. Without one, an
    outage costs the sender the publish retries only (task_publish_retry_policy, ~1 s).
    """
    try:
        series_job_process.apply_async(
            (str(job_id) if job_id is not None else None,),
            countdown=max(delay_s, 0.0),
            ignore_result=True,
        )
    except Exception:  # kombu raises OperationalError and others: the row stays queued
        logger.exception("series job %s: could not reach the Celery broker", job_id or "?")
