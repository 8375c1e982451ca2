"""The series job: one uploaded series zip, where its analysis stands and what it found."""

from __future__ import annotations

import math
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class SeriesJob(models.Model):
    """One series zip a user uploaded and its analysis, processed in the background.

    The row is the queue: a worker claims a `queued` row (one whose `retry_at`, if any,
    has come), marks it `running` under a lease token of its own and renews the lease
    while it works; a row whose lease expired (its worker died) is queued again, or
    failed once it was interrupted MAX_ATTEMPTS times. A worker writes only while the
    row still holds its token, so one that lost the job cannot overwrite its new owner's
    results. A transient failure queues the job again with `retry_at` a backoff away,
    `retries` times at most. Nothing is lost on restart.
    """

    class Status(models.TextChoices):
        """Where the job stands."""

        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Stage(models.TextChoices):
        """What a running job is doing, for the progress shown live."""

        WAITING = "waiting", "Waiting for the worker"
        SENDING = "sending", "Sending the series to the analysis service"
        ANALYSING = "analysing", "Analysing"
        THUMBNAILS = "thumbnails", "Preparing the slice viewer"
        FINISHED = "finished", "Finished"

    class Upload(models.TextChoices):
        """What is stored of the uploaded study (web/README.md, "What is kept of a study")."""

        # The upload as sent, patient data and all: only while the job may still run.
        ORIGINAL = "original", "The original upload"
        # Once analysed: the PS3.15 Basic Profile copy (web.series.deidentify), UIDs kept.
        DEIDENTIFIED = "deidentified", "A de-identified copy"
        # Refused for good, or the copy could not be made: nothing of the study is kept.
        DELETED = "deleted", "Nothing"

    # Random ids: nothing about other users' jobs can be guessed or counted from them.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="series_jobs"
    )
    disease = models.CharField(max_length=63, default="mri")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.WAITING)
    progress = models.FloatField(default=0.0)  # 0 to 1 within the analysis

    # The stored zip, by its name in the private storage; the upload's size in bytes.
    zip_name = models.CharField(max_length=200)
    zip_bytes = models.PositiveBigIntegerField()
    # Whether that zip is the original, its de-identified copy, or gone.
    upload = models.CharField(max_length=16, choices=Upload.choices, default=Upload.ORIGINAL)
    # Sizes of the stored, de-identified DICOM results (0: none): the TID 1500 SR and the
    # Key Object Selection of the flagged slices' images (none when no slice is flagged).
    sr_bytes = models.PositiveIntegerField(default=0)
    kos_bytes = models.PositiveIntegerField(default=0)

    # Findings: [{"index": 0, "positive": false, "scores": {"single": 0.1, ...},
    #   "images": [{"phase": "pre", "sop_instance_uid": "1.2...", "instance_number": 1,
    #               "position_mm": -40.0}, ...]}, ...], the images one per phase.
    slices = models.JSONField(default=list, blank=True)
    positive_slices = models.JSONField(default=list, blank=True)
    slice_count = models.PositiveIntegerField(default=0)
    thumbnail_count = models.PositiveIntegerField(default=0)
    model_name = models.CharField(max_length=200, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    demo_model = models.BooleanField(default=False)
    # What the upload holds and which series the models read (web.series.study's shape):
    # {"study_instance_uid", "phases": [...], "unused_series": [...], "skipped_files": [...],
    #  "slice_count", "ordered_by", "selected_by"}. From the upload's InspectSeries, then
    # from the analysis; {} while unknown (the upload could not be checked).
    study = models.JSONField(default=dict, blank=True)

    request_id = models.CharField(max_length=128, blank=True)
    # Claims since the job last started afresh (queued, retried): the interruption bound.
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The running worker's fence: random per claim; every write of the worker matches it.
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Automatic retries after transient failures so far, and when the next may start.
    retries = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    # The gRPC status name of the failure and the message a person is shown.
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    retryable = models.BooleanField(default=False)
    # The service's stage timings and the whole gateway call, in milliseconds.
    timings = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = (
            models.Index(fields=("user", "-created_at"), name="series_user_created"),
            models.Index(fields=("status", "created_at"), name="series_status_created"),
        )

    def __str__(self) -> str:
        return f"series job {self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        """Tells whether the job reached done or failed."""
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def percent(self) -> int:
        """Returns the progress as a whole percentage."""
        return 100 if self.status == self.Status.DONE else round(self.progress * 100)

    def retry_json(self) -> dict[str, Any] | None:
        """Returns the automatic retry the job waits for, or None when it waits for none.

        `attempt` is the attempt that will run (the first was 1), `of` how many may run
        in all; `error` is the transient failure that the retry follows.
        """
        if self.status != self.Status.QUEUED or self.retry_at is None:
            return None
        seconds = max(math.ceil((self.retry_at - timezone.now()).total_seconds()), 0)
        attempt, of = self.retries + 1, settings.WEB_SERIES_RETRIES + 1
        when = f"in {seconds} s" if seconds else "now"
        return {
            "at": self.retry_at.isoformat(),
            "in_seconds": seconds,
            "attempt": attempt,
            "of": max(of, attempt),
            "message": f"Retrying {when} (attempt {attempt} of {max(of, attempt)})",
            "error": {"code": self.error_code, "message": self.error_message},
        }

    def progress_json(self) -> dict[str, Any]:
        """Returns what the job page polls: status, stage, progress, any retry and error."""
        return {
            "id": str(self.pk),
            "status": self.status,
            "stage": self.stage,
            "stage_display": self.get_stage_display(),
            "progress": round(self.progress, 4) if self.status != self.Status.DONE else 1.0,
            "error": (
                {"code": self.error_code, "message": self.error_message}
                if self.status == self.Status.FAILED
                else None
            ),
            "retry": self.retry_json(),
        }
