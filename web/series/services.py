"""Writes of the series app: chunked uploads, jobs, their processing, retry and deletion.

One module each: `policy` (limits, attempts, leases, backoff), `uploads` (chunked and
whole uploads, checked, and the job they create), `job_queue` (due jobs, claims,
recovery, retry, delete) and `processing` (a job run under its lease, its result or
failure). Callers use the names below, `from web.series import services`.
"""

from web.series.job_queue import (
    series_job_claim,
    series_job_claim_id,
    series_job_delete,
    series_job_retry,
    series_job_retry_refusal,
    series_jobs_due,
    series_jobs_recover,
)
from web.series.policy import (
    COPY_BYTES,
    MAX_ATTEMPTS,
    MULTIPART_ALLOWANCE_BYTES,
    PARTIAL_UPLOAD_TTL,
    PNG_SIGNATURE,
    PROGRESS_EVERY_S,
    RETRY_CODES,
    RETRY_JITTER,
    SENDING_SHARE,
    SERIES_DISEASE,
    THUMBNAIL_PX,
    ZIP_SIGNATURES,
    LeaseLost,
    lease_duration,
    retry_delay,
)
from web.series.processing import (
    series_job_fail,
    series_job_record,
    series_job_run,
)
from web.series.uploads import (
    ChunkReceipt,
    UploadRefused,
    series_chunk_append,
    series_job_create,
    series_job_create_from_file,
    series_upload_check_declared,
    upload_received,
    uploads_prune_stale,
)

__all__ = [
    "COPY_BYTES",
    "MAX_ATTEMPTS",
    "MULTIPART_ALLOWANCE_BYTES",
    "PARTIAL_UPLOAD_TTL",
    "PNG_SIGNATURE",
    "PROGRESS_EVERY_S",
    "RETRY_CODES",
    "RETRY_JITTER",
    "SENDING_SHARE",
    "SERIES_DISEASE",
    "THUMBNAIL_PX",
    "ZIP_SIGNATURES",
    "ChunkReceipt",
    "LeaseLost",
    "UploadRefused",
    "lease_duration",
    "retry_delay",
    "series_chunk_append",
    "series_job_claim",
    "series_job_claim_id",
    "series_job_create",
    "series_job_create_from_file",
    "series_job_delete",
    "series_job_fail",
    "series_job_record",
    "series_job_retry",
    "series_job_retry_refusal",
    "series_job_run",
    "series_jobs_due",
    "series_jobs_recover",
    "series_upload_check_declared",
    "upload_received",
    "uploads_prune_stale",
]
