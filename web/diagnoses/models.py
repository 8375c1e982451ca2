"""The diagnosis record: one uploaded image, its private files and what the model said."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

# A record still pending after this long lost its call (a restart mid-call): it may be retried.
STALE_PENDING = timedelta(minutes=2)


class Diagnosis(models.Model):
    """One image a user uploaded and the diagnosis the gateway returned for it.

    The image is saved first (status pending) and diagnosed second: a failed call leaves
    the record `failed` with its error, and the stored image can be diagnosed again.
    """

    class Status(models.TextChoices):
        """Where the record stands."""

        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # Random ids: nothing about other users' records can be guessed or counted from them.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="diagnoses"
    )
    disease = models.CharField(max_length=63, default="skin")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)

    # The re-encoded image and its thumbnail, by their names in the private storage.
    image_name = models.CharField(max_length=200)
    thumbnail_name = models.CharField(max_length=200)
    image_format = models.CharField(max_length=8)  # "JPEG" or "PNG", as stored
    image_width = models.PositiveIntegerField()
    image_height = models.PositiveIntegerField()
    image_bytes = models.PositiveIntegerField()

    top_label = models.CharField(max_length=100, blank=True)
    top_score = models.FloatField(null=True, blank=True)
    # Every class's probability, highest first: [{"label": "melanoma", "score": 0.91}, ...].
    scores = models.JSONField(default=list, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    demo_model = models.BooleanField(default=False)

    request_id = models.CharField(max_length=128, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Validation and re-encoding of the upload, and the last gateway call, in milliseconds.
    prepare_ms = models.FloatField(null=True, blank=True)
    gateway_ms = models.FloatField(null=True, blank=True)
    # The gRPC status name of the last failure and the message a person is shown.
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    retryable = models.BooleanField(default=False)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    diagnosed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name_plural = "diagnoses"
        indexes = (
            models.Index(fields=("user", "-created_at"), name="diagnosis_user_created"),
            models.Index(fields=("user", "top_label"), name="diagnosis_user_label"),
        )

    def __str__(self) -> str:
        return f"{self.disease} diagnosis {self.pk} ({self.status})"

    @property
    def label_display(self) -> str:
        """Returns the top label for people: "atypical_nevus" -> "Atypical nevus"."""
        return label_display(self.top_label)

    def can_retry(self, now: datetime | None = None) -> bool:
        """Tells whether the stored image may be sent to the gateway again."""
        if self.status == self.Status.FAILED:
            return self.retryable
        if self.status == self.Status.PENDING:
            return (now or timezone.now()) - self.updated_at > STALE_PENDING
        return False


def label_display(label: str) -> str:
    """Returns a model label as words: "common_nevus" -> "Common nevus"."""
    words = label.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]
