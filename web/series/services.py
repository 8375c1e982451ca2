"""Writes of the series app: chunked uploads, jobs, their processing, retry and deletion."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import random
import secrets
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from servicekit.request_context import accept_request_id, current_request_id
from web import gateway_client
from web.gateway_client import GatewayClient, GatewayError, SeriesAnalysis, StudySummary
from web.series import deidentify
from web.series.models import SeriesJob
from web.series.storage import (
    PARTIAL_DIR,
    REPORT_DIR,
    REPORT_FILES,
    THUMBNAIL_DIR,
    ZIP_DIR,
    private_dir,
    series_root,
)
from web.series.study import slice_images_json, study_json

if TYPE_CHECKING:
    from web.accounts.models import User

logger = logging.getLogger(__name__)
T = TypeVar("T")

ZIP_SIGNATURES = (b"PK\x03\x04",)
COPY_BYTES = 1024 * 1024
# What a multipart body may hold beyond the zip itself: boundaries, part headers, the CSRF
# token. A body declared larger than the series limit plus this is refused unread.
MULTIPART_ALLOWANCE_BYTES = 64 * 1024
# A job interrupted (its worker lost) this many times in one run is failed, retryable.
MAX_ATTEMPTS = 3
# The transient failures a job is retried after by itself (WEB_SERIES_RETRIES times).
RETRY_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})
# Each backoff is shortened by a random share up to this, so that jobs failed together by
# one outage do not all come back at the same second.
RETRY_JITTER = 0.2
# Partial uploads nobody finished are removed after this long.
PARTIAL_UPLOAD_TTL = timedelta(hours=24)
PROGRESS_EVERY_S = 0.5
# Share of the progress bar that sending the zip takes; the analysis takes the rest.
SENDING_SHARE = 0.5
# Side of each slice thumbnail, in pixels: the demo models' own input size. The MRI service
# renders them (AnalyzeSeries' previews), so the series is decoded once, by the service.
THUMBNAIL_PX = 128
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The disease every series job is for (SeriesJob.disease's default).
SERIES_DISEASE = "mri"


class LeaseLost(Exception):
    """This worker no longer holds the job: its lease expired and the job was taken over."""


def lease_duration() -> timedelta:
    """Returns how long a claim lasts without a renewal (WEB_SERIES_LEASE_SECONDS)."""
    return timedelta(seconds=settings.WEB_SERIES_LEASE_SECONDS)


def retry_delay(retry: int) -> timedelta:
    """Returns the backoff before automatic retry number `retry` (from 1), jitter included."""
    base = float(settings.WEB_SERIES_RETRY_BASE_SECONDS)
    full = min(base * 2 ** (retry - 1), float(settings.WEB_SERIES_RETRY_MAX_SECONDS))
    # Jitter spreads retries out; it needs no cryptographic randomness.
    return timedelta(seconds=full * (1 - RETRY_JITTER * random.random()))  # noqa: S311


class UploadRefused(Exception):
    """An upload (or one chunk of it) that is refused; nothing of it is kept unless resumable."""

    def __init__(self, message: str, *, http_status: int, reason: str, received: int = 0):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.reason = reason
        self.received = received


@dataclass(frozen=True)
class ChunkReceipt:
    """Where a chunked upload stands after one chunk: its id, bytes received, the job once whole."""

    upload_id: str
    received: int
    total: int
    job: SeriesJob | None


def _megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MB"


def _check_total(total: int) -> None:
    cap = settings.WEB_MAX_SERIES_BYTES
    if total <= 0:
        raise UploadRefused("The file is empty.", http_status=400, reason="SERIES_EMPTY")
    if total > cap:
        raise UploadRefused(
            f"The series is {_megabytes(total)}; the limit is {_megabytes(cap)}.",
            http_status=413,
            reason="SERIES_TOO_LARGE",
        )


def _partial_path(user: User, upload_id: str) -> Path:
    # The owner's id is part of the name: nobody can append to another user's upload.
    return private_dir(PARTIAL_DIR) / f"{user.pk}-{upload_id}.part"


def _valid_upload_id(upload_id: str) -> str:
    try:
        return uuid.UUID(hex=upload_id).hex
    except ValueError:
        raise UploadRefused(
            "Unknown upload; start it again.", http_status=404, reason="UPLOAD_NOT_FOUND"
        ) from None


def upload_received(*, user: User, upload_id: str) -> int:
    """Returns how many bytes of the user's unfinished upload arrived (to resume it)."""
    path = _partial_path(user, _valid_upload_id(upload_id))
    if not path.is_file():
        raise UploadRefused(
            "Unknown upload; start it again.", http_status=404, reason="UPLOAD_NOT_FOUND"
        )
    return path.stat().st_size


def series_chunk_append(
    *, user: User, upload_id: str, offset: int, total: int, chunk: IO[bytes], chunk_size: int
) -> ChunkReceipt:
    """Appends one chunk to the user's upload; the chunk that completes it creates the job.

    The first chunk has no `upload_id` and offset 0. A chunk must start where the stored
    bytes end: otherwise 409 with the bytes received, so the client resumes from there.
    Anything refused for good (over the cap, empty, not a zip) removes the partial file.
    """
    _check_total(total)
    if not upload_id:
        if offset != 0:
            raise UploadRefused(
                "A new upload starts at offset 0.", http_status=400, reason="UPLOAD_OFFSET"
            )
        uploads_prune_stale()
        upload_id = uuid.uuid4().hex
        _partial_path(user, upload_id).touch(mode=0o600, exist_ok=False)
    upload_id = _valid_upload_id(upload_id)
    path = _partial_path(user, upload_id)
    if not path.is_file():
        raise UploadRefused(
            "Unknown upload; start it again.", http_status=404, reason="UPLOAD_NOT_FOUND"
        )
    try:
        received = _append(path, offset=offset, total=total, chunk=chunk, chunk_size=chunk_size)
    except UploadRefused as refused:
        if refused.http_status != 409:
            path.unlink(missing_ok=True)
        raise
    if received < total:
        return ChunkReceipt(upload_id, received, total, None)
    try:
        job = series_job_create_from_file(user=user, path=path)
    finally:
        path.unlink(missing_ok=True)
    return ChunkReceipt(upload_id, received, total, job)


def _append(path: Path, *, offset: int, total: int, chunk: IO[bytes], chunk_size: int) -> int:
    """Writes the chunk at the end of the file under an exclusive lock; returns the new size."""
    with path.open("r+b") as stored:
        fcntl.flock(stored, fcntl.LOCK_EX)
        size = os.fstat(stored.fileno()).st_size
        if offset != size:
            raise UploadRefused(
                f"This upload has {size} bytes; send the chunk that starts there.",
                http_status=409,
                reason="UPLOAD_OFFSET",
                received=size,
            )
        if chunk_size <= 0 or offset + chunk_size > total:
            raise UploadRefused(
                "The chunk does not fit the declared size of the upload.",
                http_status=400 if chunk_size <= 0 else 413,
                reason="UPLOAD_CHUNK",
            )
        stored.seek(size)
        written = _copy(chunk, stored, limit=total - size)
        if written != chunk_size:
            raise UploadRefused(
                "The chunk arrived incomplete.", http_status=400, reason="UPLOAD_CHUNK"
            )
        return size + written


def _copy(source: IO[bytes], target: IO[bytes], *, limit: int) -> int:
    """Copies at most limit bytes; one more byte than that is a refusal."""
    written = 0
    while block := source.read(min(COPY_BYTES, limit - written + 1)):
        written += len(block)
        if written > limit:
            raise UploadRefused(
                "The upload is larger than it declared.", http_status=413, reason="UPLOAD_CHUNK"
            )
        target.write(block)
    return written


def series_upload_check_declared(*, content_length: str | None) -> None:
    """Refuses (413) a whole-zip upload whose declared body is over the series limit.

    Called with the request's Content-Length before anything parses the body, so an
    upload that cannot fit is never read into a temporary file. An absent or malformed
    length proves nothing: the zip's own size is checked once parsed (series_job_create).
    """
    try:
        length = int(content_length or "")
    except ValueError:
        return
    cap = settings.WEB_MAX_SERIES_BYTES
    if length > cap + MULTIPART_ALLOWANCE_BYTES:
        raise UploadRefused(
            f"The upload is {_megabytes(length)}; the limit for a series is {_megabytes(cap)}.",
            http_status=413,
            reason="SERIES_TOO_LARGE",
        )


def series_job_create(
    *,
    user: User,
    upload: IO[bytes],
    size: int | None = None,
    gateway: GatewayClient | None = None,
) -> SeriesJob:
    """Stores a whole uploaded zip (form or API) and queues its job; see series_chunk_append.

    `size` is the uploaded file's size where known (Django's UploadedFile.size): an empty
    zip or one over the limit is refused on it before a byte is copied. The zip is then
    streamed into private storage in blocks, never held in memory, and the copy stops one
    byte past the limit whatever size was claimed.
    """
    if size is not None:
        _check_total(size)
    path = private_dir(PARTIAL_DIR) / f"{user.pk}-{uuid.uuid4().hex}.part"
    try:
        # Owner-only from the first byte, whatever the umask.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as stored:
            upload.seek(0)
            _copy(upload, stored, limit=settings.WEB_MAX_SERIES_BYTES)
        _check_total(path.stat().st_size)
        return series_job_create_from_file(user=user, path=path, gateway=gateway)
    except UploadRefused as refused:
        if refused.reason == "UPLOAD_CHUNK":  # over the cap while copying
            refused = UploadRefused(
                f"The series is larger than the limit of "
                f"{_megabytes(settings.WEB_MAX_SERIES_BYTES)}.",
                http_status=413,
                reason="SERIES_TOO_LARGE",
            )
        raise refused from None
    finally:
        path.unlink(missing_ok=True)


def _check_zip(path: Path) -> None:
    with path.open("rb") as stored:
        head = stored.read(4)
    if head.startswith(ZIP_SIGNATURES) and not zipfile.is_zipfile(path):
        raise UploadRefused(
            "The zip archive is incomplete or damaged: its table of contents is missing. "
            "Upload the series again.",
            http_status=400,
            reason="SERIES_NOT_ZIP",
        )
    if not head.startswith(ZIP_SIGNATURES):
        raise UploadRefused(
            "The file is not a zip archive. Upload the series as one .zip file.",
            http_status=400,
            reason="SERIES_NOT_ZIP",
        )


def _check_series(path: Path, size: int, gateway: GatewayClient | None) -> StudySummary | None:
    """Asks the MRI service, through the gateway's InspectSeries, whether it takes the zip.

    The service checks the upload exactly as its analysis will (the archive, every DICOM
    header, the selection of the contrast phases) without running the models, so a
    hostile or unusable series is refused before any job exists, with the service's own
    message, which names the offending entry or series. That refusal (INVALID_ARGUMENT)
    is UploadRefused, 400, or 413 when it says the series is over a limit. Any other
    failure (the gateway or the service down, busy, slow, not routing the disease) cannot
    say the series is bad: like a skin photo that the gateway could not diagnose, the
    upload is kept, so this returns None and the job is queued unchecked; its
    AnalyzeSeries checks the series again and refuses it then.
    """
    client = gateway or gateway_client.get_gateway()
    try:
        with path.open("rb") as stored:
            inspection = client.inspect_series(
                chunks=gateway_client.file_chunks(stored),
                disease=SERIES_DISEASE,
                total_size_bytes=size,
                preview_size_px=0,  # the previews come with the analysis
            )
    except GatewayError as error:
        if error.code == "INVALID_ARGUMENT":
            reason = error.reason or "SERIES_INVALID"
            status = error.http_status
            raise UploadRefused(error.message, http_status=status, reason=reason) from None
        logger.warning(
            "series upload not checked (%s): queued for the analysis to check", error.code
        )
        return None
    return inspection.study


def series_job_create_from_file(
    *, user: User, path: Path, gateway: GatewayClient | None = None
) -> SeriesJob:
    """Moves a complete upload into private storage and queues its job; the caller's file goes.

    Refuses (UploadRefused, no row, no file) an empty file, one over the cap, one that is
    not a zip, or a zip that the MRI service says it would refuse (see _check_series:
    the message names the offending entry). The study the service found is stored with
    the job, so its page shows the selected series before the analysis has run.
    """
    size = path.stat().st_size
    _check_total(size)
    _check_zip(path)
    study = _check_series(path, size, gateway)
    job_id = uuid.uuid4()
    zip_name = f"{ZIP_DIR}/{job_id.hex}.zip"
    target = private_dir(ZIP_DIR) / f"{job_id.hex}.zip"
    shutil.move(path, target)
    try:
        with transaction.atomic():
            job = SeriesJob.objects.create(
                id=job_id,
                user=user,
                disease=SERIES_DISEASE,
                zip_name=zip_name,
                zip_bytes=size,
                study=study_json(study) if study is not None else {},
                request_id=accept_request_id(current_request_id()),
            )
            transaction.on_commit(_notify_worker)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    checked = "checked" if study is not None else "not checked"
    logger.info("series job %s queued (%d bytes, %s)", job.pk, size, checked)
    return job


def _notify_worker(job_id: uuid.UUID | None = None, delay_s: float = 0.0) -> None:
    from web.series import worker

    worker.notify(job_id=job_id, delay_s=delay_s)


def uploads_prune_stale() -> int:
    """Removes partial uploads untouched for PARTIAL_UPLOAD_TTL; returns how many."""
    cutoff = time.time() - PARTIAL_UPLOAD_TTL.total_seconds()
    removed = 0
    for path in private_dir(PARTIAL_DIR).glob("*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


# --- the queue ------------------------------------------------------------------------------


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


# --- processing -----------------------------------------------------------------------------


class _Sent:
    """Counts the bytes handed to grpc, which reads the chunks in its own thread.

    Once `stop` is set (the job was lost), the next chunk ends the upload, and with it
    the call.
    """

    def __init__(self) -> None:
        self.count = 0
        self.stop = threading.Event()

    def chunks(self, stream: IO[bytes]) -> Iterator[bytes]:
        for chunk in gateway_client.file_chunks(stream):
            if self.stop.is_set():
                raise LeaseLost
            self.count += len(chunk)
            yield chunk


def _fenced(job: SeriesJob) -> QuerySet[SeriesJob]:
    """Matches the job's row only while it still holds this worker's lease token."""
    return SeriesJob.objects.filter(pk=job.pk, lease_token=job.lease_token)


class _Lease:
    """Renews a claimed job's lease, at most every WEB_SERIES_HEARTBEAT_SECONDS unless forced.

    Every renewal is fenced by the job's token and raises LeaseLost once the row holds
    another (the job was requeued and claimed by someone else). After a renewal nobody
    can take the job over for WEB_SERIES_LEASE_SECONDS, so a step that writes shared
    files right after one cannot race its new owner.
    """

    def __init__(self, job: SeriesJob) -> None:
        self.job = job
        self.renewed = time.monotonic()

    def renew(self, *, force: bool = True, **fields: object) -> None:
        now = time.monotonic()
        if not force and not fields and now - self.renewed < settings.WEB_SERIES_HEARTBEAT_SECONDS:
            return
        at = timezone.now()
        self.job.heartbeat_at, self.job.lease_expires_at = at, at + lease_duration()
        if not _fenced(self.job).update(
            heartbeat_at=at, lease_expires_at=self.job.lease_expires_at, **fields
        ):
            raise LeaseLost
        self.renewed = now


def series_job_run(*, job: SeriesJob, gateway: GatewayClient | None = None) -> SeriesJob:
    """Streams a claimed job's zip to the gateway, then records the findings and thumbnails.

    The analysis also returns the study it read, a THUMBNAIL_PX preview of every
    pre-contrast slice, which become the viewer's thumbnails, and the result as DICOM (a
    TID 1500 SR and a KOS), which series_job_record keeps de-identified. The analysis reads
    the original upload: the service needs its SeriesDescription and acquisition times to
    pick the contrast phases, and keeps nothing of it beyond the call.

    The call runs in a helper thread while this thread writes the progress and renews
    the lease, so every database write stays in the worker's own thread. A gateway
    failure becomes the job's error (INVALID_ARGUMENT shows the service's own message,
    such as which zip entry was refused); a transient one queues an automatic retry.
    A worker that lost the job (LeaseLost) stops and writes nothing more: it returns
    the row as its new owner keeps it.
    """
    client = gateway or gateway_client.get_gateway()
    zip_path = series_root() / job.zip_name
    sent = _Sent()
    lease = _Lease(job)
    started = time.perf_counter()
    try:
        with zip_path.open("rb") as stored:
            pool = ThreadPoolExecutor(1, "series-call")
            try:
                future = pool.submit(
                    client.analyze_series,
                    chunks=sent.chunks(stored),
                    disease=job.disease,
                    total_size_bytes=job.zip_bytes,
                    preview_size_px=THUMBNAIL_PX,
                    dicom_reports=True,
                    request_id=job.request_id or None,
                )
                result = _await(future.result, lambda: _beat(job, sent.count, lease))
            finally:
                # A lost job's call is not waited for: its upload stops at the next chunk
                # and whatever it answers is dropped with the helper thread.
                sent.stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
    except GatewayError as error:
        return _fenced_or_lost(job, functools.partial(series_job_fail, job=job, error=error))
    except FileNotFoundError:
        return _fenced_or_lost(
            job,
            lambda: _fail(job, "DATA_LOSS", "The stored series is gone; upload it again.", False),
        )
    except LeaseLost:
        return _lost(job)
    job.timings = {"call_ms": round((time.perf_counter() - started) * 1000, 3)}
    return _fenced_or_lost(job, lambda: series_job_record(job=job, result=result, lease=lease))


def _fenced_or_lost(job: SeriesJob, write: Callable[[], SeriesJob]) -> SeriesJob:
    try:
        return write()
    except LeaseLost:
        return _lost(job)


def _lost(job: SeriesJob) -> SeriesJob:
    logger.warning("series job %s: taken over by another worker; this one stops", job.pk)
    job.refresh_from_db()
    return job


def _await(result: Callable[..., T], beat: Callable[[], None]) -> T:
    while True:
        try:
            return result(timeout=PROGRESS_EVERY_S)
        except FutureTimeout:
            beat()


def _beat(job: SeriesJob, sent: int, lease: _Lease) -> None:
    """Writes the progress of a running job when it moved, and renews its lease."""
    fraction = min(sent / job.zip_bytes, 1.0) if job.zip_bytes else 1.0
    stage = SeriesJob.Stage.SENDING if fraction < 1.0 else SeriesJob.Stage.ANALYSING
    progress = round(fraction * SENDING_SHARE, 4) if fraction < 1.0 else 0.9
    if (stage, progress) == (job.stage, job.progress):
        lease.renew(force=False)
        return
    job.stage, job.progress = stage, progress
    lease.renew(stage=stage, progress=progress)


def series_job_record(
    *, job: SeriesJob, result: SeriesAnalysis, lease: _Lease | None = None
) -> SeriesJob:
    """Records the findings, the study and the thumbnails, and marks the job done.

    Each slice keeps its DICOM image in every phase (SOPInstanceUID, InstanceNumber,
    position), so a flagged slice can be found in a PACS or viewer. Every write is
    fenced by the job's lease token: LeaseLost when another worker took the job over,
    whose results are then left as they are.
    """
    lease = lease or _Lease(job)
    job.slices = [
        {
            "index": finding.slice_index,
            "positive": finding.positive,
            "scores": {s.model_name: s.probability for s in finding.scores},
            "images": slice_images_json(finding.images),
        }
        for finding in sorted(result.slices, key=lambda f: f.slice_index)
    ]
    job.positive_slices = sorted(result.positive_slice_indices)
    job.slice_count = result.slice_count
    job.model_name, job.model_version = result.model_name, result.model_version
    job.demo_model = result.demo_model
    job.request_id = result.request_id
    job.study = study_json(result.study) or job.study
    job.timings = {
        **job.timings,
        "upload_ms": result.upload_ms,
        "prepare_ms": result.prepare_ms,
        "model_ms": result.model_ms,
        "gateway_ms": result.elapsed_ms,
    }
    lease.renew(stage=SeriesJob.Stage.THUMBNAILS, progress=0.95)
    job.thumbnail_count = _store_thumbnails(job, result.previews)
    _keep_deidentified(job, result, lease)
    job.status, job.stage, job.progress = SeriesJob.Status.DONE, SeriesJob.Stage.FINISHED, 1.0
    job.error_code = job.error_message = ""
    job.retryable = False
    job.retry_at = None
    job.finished_at = timezone.now()
    _save_fenced(job)
    logger.info("series job %s done: %d positive slices", job.pk, len(job.positive_slices))
    return job


def _store_thumbnails(job: SeriesJob, previews: Sequence[bytes]) -> int:
    """Stores the service's previews, one PNG per slice; returns how many (0 for none).

    They are served as image/png to the owner, so anything that is not a PNG keeps the
    whole set out (the viewer then shows the slices without images).
    """
    if not all(image.startswith(PNG_SIGNATURE) for image in previews):
        logger.error("series job %s: the previews are not all PNG; none stored", job.pk)
        return 0
    folder = private_dir(THUMBNAIL_DIR) / job.pk.hex
    folder.mkdir(mode=0o700, exist_ok=True)
    for index, image in enumerate(previews):
        target = folder / f"{index}.png"
        target.write_bytes(image)
        target.chmod(0o600)
    return len(previews)


def _keep_deidentified(job: SeriesJob, result: SeriesAnalysis, lease: _Lease) -> None:
    """Keeps the SR and the KOS de-identified and replaces the upload by its de-identified copy.

    One seed for the three, so their replacement names, IDs and date shift agree; it lives
    in this call only. What cannot be de-identified is not kept: an SR or KOS that does
    not read is dropped, and a study whose copy fails loses its original all the same
    (the findings stay). Runs in a helper thread while this one beats the heartbeat, as
    a large study takes a while and a silent job would be taken for a dead worker's; the
    lease is renewed once more right before the original is replaced or deleted, so a
    worker that lost the job never touches the upload its new owner reads.
    """
    seed = secrets.token_hex(16)
    folder = private_dir(REPORT_DIR) / job.pk.hex
    for kind, data in (("sr", result.measurement_report), ("kos", result.key_images)):
        size = 0
        if data:
            try:
                cleaned = deidentify.deidentify_part10(data, seed=seed)
            except deidentify.NotDeidentifiable as error:
                logger.error("series job %s: the %s is not kept: %s", job.pk, kind, error)
            else:
                folder.mkdir(mode=0o700, exist_ok=True)
                _write_private(folder / REPORT_FILES[kind], cleaned)
                size = len(cleaned)
        if kind == "sr":
            job.sr_bytes = size
        else:
            job.kos_bytes = size
    original = series_root() / job.zip_name
    if job.upload != SeriesJob.Upload.ORIGINAL or not original.is_file():
        return
    copy = original.with_suffix(".deid.part")
    try:
        with ThreadPoolExecutor(1, "series-deid") as pool:
            future = pool.submit(deidentify.deidentify_study_zip, original, copy, seed=seed)
            kept = _await(future.result, lambda: lease.renew(force=False))
        copy.chmod(0o600)
        lease.renew()
        os.replace(copy, original)  # the original's name now holds the copy, atomically
    except LeaseLost:
        copy.unlink(missing_ok=True)
        raise
    except Exception as error:  # whatever went wrong, the original must not stay
        logger.error(
            "series job %s: no de-identified copy (%s); the upload is deleted",
            job.pk,
            type(error).__name__,
        )
        copy.unlink(missing_ok=True)
        lease.renew()
        original.unlink(missing_ok=True)
        job.upload = SeriesJob.Upload.DELETED
        return
    job.upload = SeriesJob.Upload.DEIDENTIFIED
    logger.info(
        "series job %s: upload replaced by its de-identified copy (%d objects, %d left out)",
        job.pk,
        kept.kept,
        kept.left_out,
    )


def _write_private(path: Path, data: bytes) -> None:
    """Writes a file readable by this process's user only, from its first byte."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(data)


def _save_fenced(job: SeriesJob) -> None:
    """Saves every field of the job, only while its row holds the job's lease token."""
    fields = {
        f.attname: getattr(job, f.attname)
        for f in SeriesJob._meta.concrete_fields
        if not f.primary_key and f.attname != "updated_at"
    }
    if not _fenced(job).update(**fields, updated_at=timezone.now()):
        raise LeaseLost


def series_job_fail(*, job: SeriesJob, error: GatewayError) -> SeriesJob:
    """Records that the gateway could not analyse the series, and why."""
    job.request_id = error.request_id or job.request_id
    return _fail(job, error.code, error.message, error.retryable)


def _fail(job: SeriesJob, code: str, message: str, retryable: bool) -> SeriesJob:
    """Records a failure: an automatic retry for a transient one while retries remain.

    A retryable failure whose code is in RETRY_CODES (the service down, busy, slow)
    queues the job again, `retry_delay` away, up to WEB_SERIES_RETRIES times; the
    original upload stays for it. Otherwise the job fails: refused for good (not
    retryable), nothing will read the upload again and it is deleted; retryable, the
    retry by hand needs the original, which stays. LeaseLost when the job is no longer
    this worker's (nothing written, nothing deleted).
    """
    job.error_code, job.error_message = code, message[:500]
    job.retryable = retryable
    if retryable and code in RETRY_CODES and job.retries < settings.WEB_SERIES_RETRIES:
        return _retry_later(job)
    job.status, job.stage = SeriesJob.Status.FAILED, SeriesJob.Stage.FINISHED
    job.retry_at = None
    job.finished_at = timezone.now()
    keep = job.upload
    if not retryable:
        job.upload = SeriesJob.Upload.DELETED if keep != SeriesJob.Upload.DELETED else keep
    _save_fenced(job)  # first the row, so a lost worker never deletes the new owner's file
    if not retryable and keep != SeriesJob.Upload.DELETED:
        (series_root() / job.zip_name).unlink(missing_ok=True)
    logger.warning("series job %s failed: %s", job.pk, code)
    return job


def _retry_later(job: SeriesJob) -> SeriesJob:
    """Queues the job again after the next backoff, afresh for the interruption bound."""
    job.retries += 1
    delay = retry_delay(job.retries)
    job.status, job.stage, job.progress = SeriesJob.Status.QUEUED, SeriesJob.Stage.WAITING, 0.0
    job.retry_at = timezone.now() + delay
    job.attempts = 0
    job.worker = ""
    token, job.lease_token, job.lease_expires_at = job.lease_token, "", None
    with transaction.atomic():
        if not SeriesJob.objects.filter(pk=job.pk, lease_token=token).update(
            status=job.status,
            stage=job.stage,
            progress=job.progress,
            retries=job.retries,
            retry_at=job.retry_at,
            attempts=job.attempts,
            worker=job.worker,
            lease_token="",
            lease_expires_at=None,
            error_code=job.error_code,
            error_message=job.error_message,
            retryable=job.retryable,
            request_id=job.request_id,
            updated_at=timezone.now(),
        ):
            job.lease_token = token
            raise LeaseLost
        job_id, seconds = job.pk, delay.total_seconds()
        transaction.on_commit(lambda: _notify_worker(job_id, seconds))
    logger.warning(
        "series job %s: %s; retry %d of %d in %.0f s",
        job.pk,
        job.error_code,
        job.retries,
        settings.WEB_SERIES_RETRIES,
        delay.total_seconds(),
    )
    return job
