"""Reads of the diagnoses app: a user's own records only, their files, filters."""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING, Literal

from django.core.files import File
from django.db.models import QuerySet

from web.diagnoses.models import Diagnosis
from web.diagnoses.storage import private_storage

if TYPE_CHECKING:
    from web.accounts.models import User

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


def diagnosis_list(
    *,
    user: User,
    label: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
) -> QuerySet[Diagnosis]:
    """Returns the user's records, newest first, by top label and creation day (inclusive)."""
    records = Diagnosis.objects.filter(user=user)
    if label:
        records = records.filter(top_label=label)
    if date_from is not None:
        records = records.filter(created_at__date__gte=date_from)
    if date_to is not None:
        records = records.filter(created_at__date__lte=date_to)
    return records.order_by("-created_at")


def diagnosis_get(*, user: User, diagnosis_id: uuid.UUID) -> Diagnosis | None:
    """Returns the user's record with this id; None for anybody else's or a missing one."""
    return Diagnosis.objects.filter(user=user, pk=diagnosis_id).first()


def diagnosis_labels(*, user: User) -> list[str]:
    """Returns the top labels among the user's finished records, sorted."""
    labels = (
        Diagnosis.objects.filter(user=user, status=Diagnosis.Status.DONE)
        .exclude(top_label="")
        .values_list("top_label", flat=True)
        .distinct()
    )
    return sorted(set(labels))


def diagnosis_file(
    *, diagnosis: Diagnosis, variant: Literal["image", "thumbnail"]
) -> tuple[File[bytes], str]:
    """Returns the stored image or thumbnail, opened, with its content type."""
    if variant == "thumbnail":
        return private_storage().open(diagnosis.thumbnail_name, "rb"), "image/jpeg"
    content_type = CONTENT_TYPES.get(diagnosis.image_format, "application/octet-stream")
    return private_storage().open(diagnosis.image_name, "rb"), content_type


def result_emails_enabled(*, user: User) -> bool:
    """Tells whether the user asked for finished diagnoses by e-mail."""
    return user.email_results
