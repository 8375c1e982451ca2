"""Running a series job: its analysis through the gateway under a lease, result or failure."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from web import gateway_client
from web.gateway_client import GatewayClient, GatewayError, SeriesAnalysis
from web.series import deidentify
from web.series.models import SeriesJob
from web.series.policy import (
    PNG_SIGNATURE,
    PROGRESS_EVERY_S,
    RETRY_CODES,
    SENDING_SHARE,
    THUMBNAIL_PX,
    LeaseLost,
    T,
    lease_duration,
    retry_delay,
)
from web.series.storage import (
    REPORT_DIR,
    REPORT_FILES,
    THUMBNAIL_DIR,
    private_dir,
    series_root,
)
from web.series.study import slice_images_json, study_json
from web.series.uploads import (
    _notify_worker,
)

logger = logging.getLogger(__name__)


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
