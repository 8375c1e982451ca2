"""Series uploads: chunked and whole, checked before a job is queued, and the job they create."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.db import transaction

from servicekit.request_context import accept_request_id, current_request_id
from web import gateway_client
from web.gateway_client import GatewayClient, GatewayError, StudySummary
from web.series.models import SeriesJob
from web.series.policy import (
    COPY_BYTES,
    MULTIPART_ALLOWANCE_BYTES,
    PARTIAL_UPLOAD_TTL,
    SERIES_DISEASE,
    ZIP_SIGNATURES,
)
from web.series.storage import (
    PARTIAL_DIR,
    ZIP_DIR,
    private_dir,
)
from web.series.study import study_json

if TYPE_CHECKING:
    from web.accounts.models import User

logger = logging.getLogger(__name__)


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
