"""How series jobs behave: limits, attempts, leases and the backoff between retries."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TypeVar

from django.conf import settings

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
