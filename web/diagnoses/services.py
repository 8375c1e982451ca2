"""Writes of the diagnoses app: store an upload, diagnose it, retry, delete, e-mail results."""

from __future__ import annotations

import io
import logging
import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from servicekit.errors import InvalidImage
from servicekit.images import ImageLimits, decode_image
from web import gateway_client
from web.diagnoses.models import Diagnosis, label_display
from web.diagnoses.storage import private_storage
from web.gateway_client import GatewayClient, GatewayError

if TYPE_CHECKING:
    from web.accounts.models import User

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_QUALITY = 95
THUMBNAIL_PX = 320
THUMBNAIL_QUALITY = 85


# What recording a result or a failure changes; `updated_at` is auto_now, saved with them.
RESULT_FIELDS = (
    "status",
    "top_label",
    "top_score",
    "scores",
    "model_name",
    "model_version",
    "demo_model",
    "request_id",
    "gateway_ms",
    "diagnosed_at",
    "error_code",
    "error_message",
    "retryable",
    "updated_at",
)


@dataclass(frozen=True)
class EncodedImage:
    """An upload decoded, checked and encoded again without its metadata."""

    image: bytes
    thumbnail: bytes
    image_format: str
    width: int
    height: int


def image_limits() -> ImageLimits:
    """Returns the largest image accepted, from WEB_MAX_IMAGE_BYTES and WEB_MAX_IMAGE_PIXELS."""
    return ImageLimits(
        max_bytes=settings.WEB_MAX_IMAGE_BYTES, max_pixels=settings.WEB_MAX_IMAGE_PIXELS
    )


def image_reencode(*, data: bytes, limits: ImageLimits) -> EncodedImage:
    """Returns the upload decoded and encoded again, so nothing but its pixels is kept.

    EXIF (GPS position, camera, dates), XMP, ICC and text chunks are dropped; the image
    is turned upright per its EXIF orientation first. JPEG stays JPEG, PNG stays PNG.
    Raises InvalidImage for empty, unreadable, truncated, refused or oversized uploads.
    """
    image = decode_image(data, limits)
    image_format = "PNG" if data.startswith(PNG_SIGNATURE) else "JPEG"
    image.info = {}  # nothing the upload carried is written out again
    return EncodedImage(
        image=_encode(image, image_format),
        thumbnail=_encode(thumbnail_make(image), "JPEG", quality=THUMBNAIL_QUALITY),
        image_format=image_format,
        width=image.width,
        height=image.height,
    )


def thumbnail_make(image: Image.Image) -> Image.Image:
    """Returns the image shrunk to fit THUMBNAIL_PX on its longer side, or itself if it fits.

    An integer box reduction (each output pixel the mean of a block) is the same filter
    Pillow's `reducing_gap` applies first, and costs a tenth of a Lanczos resample of the
    whole image: the upload path's largest cost before this (web_load bench).
    """
    factor = math.ceil(max(image.size) / THUMBNAIL_PX)
    return image.reduce(factor) if factor > 1 else image


def _encode(image: Image.Image, image_format: str, *, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        # No `optimize`: Huffman-table optimisation saves a few percent of the bytes and
        # doubles the encode time of every upload.
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _read_upload(upload: UploadedFile[bytes] | bytes, limits: ImageLimits) -> bytes:
    """Returns the upload's bytes; refuses an oversized one before reading it."""
    size = len(upload) if isinstance(upload, bytes) else upload.size or 0
    if size > limits.max_bytes:
        raise InvalidImage(
            f"the image is {size / 2**20:.1f} MB; the limit is {limits.max_bytes / 2**20:.1f} MB",
            reason="IMAGE_TOO_LARGE",
        )
    if isinstance(upload, bytes):
        return upload
    upload.seek(0)
    data: bytes = upload.read(limits.max_bytes + 1)
    return data


def diagnosis_create(
    *, user: User, upload: UploadedFile[bytes] | bytes, disease: str = "skin"
) -> Diagnosis:
    """Checks, re-encodes and stores an upload privately, and records it as pending.

    `upload` is a file from a form or the API, or bytes the server fetched (image_url).
    Nothing is stored unless the whole upload is a valid image: an InvalidImage leaves no
    row and no file. The files get server-made names; the upload's name is not kept.
    """
    started = time.perf_counter()
    encoded = image_reencode(data=_read_upload(upload, image_limits()), limits=image_limits())
    diagnosis_id = uuid.uuid4()
    extension = "png" if encoded.image_format == "PNG" else "jpg"
    storage = private_storage()
    saved: list[str] = []
    try:
        saved.append(
            storage.save(f"images/{diagnosis_id.hex}.{extension}", ContentFile(encoded.image))
        )
        saved.append(
            storage.save(f"thumbnails/{diagnosis_id.hex}.jpg", ContentFile(encoded.thumbnail))
        )
        diagnosis = Diagnosis.objects.create(
            id=diagnosis_id,
            user=user,
            disease=disease,
            image_name=saved[0],
            thumbnail_name=saved[1],
            image_format=encoded.image_format,
            image_width=encoded.width,
            image_height=encoded.height,
            image_bytes=len(encoded.image),
            prepare_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    except BaseException:
        diagnosis_files_remove(names=saved)
        raise
    logger.info("diagnosis %s stored (%s, %d bytes)", diagnosis.pk, disease, len(encoded.image))
    return diagnosis


def diagnosis_run(
    *, diagnosis: Diagnosis, gateway: GatewayClient | None = None, base_url: str = ""
) -> Diagnosis:
    """Sends the stored image to the gateway and records the result, or the failure.

    A failed call never loses the upload: the record becomes `failed` with the error's
    code and a message for people, and `diagnosis_retry` can send it again. `base_url`
    (such as "https://medimg.example.com") makes the result e-mail link to the page.
    """
    client = gateway or gateway_client.get_gateway()
    with private_storage().open(diagnosis.image_name, "rb") as stored:
        image = stored.read()
    diagnosis.attempts += 1
    Diagnosis.objects.filter(pk=diagnosis.pk).update(attempts=diagnosis.attempts)
    try:
        result = client.diagnose(image=image, disease=diagnosis.disease)
    except GatewayError as error:
        return diagnosis_record_failure(diagnosis=diagnosis, error=error)
    return diagnosis_record_result(diagnosis=diagnosis, result=result, base_url=base_url)


def diagnosis_submit(
    *,
    user: User,
    upload: UploadedFile[bytes] | bytes,
    disease: str = "skin",
    gateway: GatewayClient | None = None,
    base_url: str = "",
) -> Diagnosis:
    """Stores the upload first, then diagnoses it; see diagnosis_create and diagnosis_run."""
    diagnosis = diagnosis_create(user=user, upload=upload, disease=disease)
    return diagnosis_run(diagnosis=diagnosis, gateway=gateway, base_url=base_url)


def diagnosis_record_result(
    *, diagnosis: Diagnosis, result: gateway_client.Diagnosis, base_url: str = ""
) -> Diagnosis:
    """Records a diagnosis the gateway returned; queues the e-mail for after the commit."""
    diagnosis.status = Diagnosis.Status.DONE
    diagnosis.top_label = result.top_label
    diagnosis.top_score = result.top_score
    diagnosis.scores = [{"label": s.label, "score": s.score} for s in result.scores]
    diagnosis.model_name = result.model_name
    diagnosis.model_version = result.model_version
    diagnosis.demo_model = result.demo_model
    diagnosis.request_id = result.request_id
    diagnosis.gateway_ms = result.elapsed_ms
    diagnosis.diagnosed_at = timezone.now()
    diagnosis.error_code = diagnosis.error_message = ""
    diagnosis.retryable = False
    # One UPDATE, committed on its own in autocommit mode (no BEGIN/COMMIT round trips on
    # the upload path); inside a caller's transaction, on_commit waits for its commit.
    diagnosis.save(update_fields=RESULT_FIELDS)
    if diagnosis.user.email_results:
        diagnosis_id = diagnosis.pk

        def send_result_email() -> None:
            diagnosis_result_email_send(diagnosis_id=diagnosis_id, base_url=base_url)

        # robust: an SMTP failure is logged and never undoes the recorded result.
        transaction.on_commit(send_result_email, robust=True)
    logger.info(
        "diagnosis %s done: %s (%s %s)",
        diagnosis.pk,
        result.top_label,
        result.model_name,
        result.model_version,
    )
    return diagnosis


def diagnosis_record_failure(*, diagnosis: Diagnosis, error: GatewayError) -> Diagnosis:
    """Records that the gateway could not diagnose the stored image, and why."""
    diagnosis.status = Diagnosis.Status.FAILED
    diagnosis.error_code = error.code
    diagnosis.error_message = error.message[:500]
    diagnosis.retryable = error.retryable
    diagnosis.request_id = error.request_id
    diagnosis.gateway_ms = None
    diagnosis.save(update_fields=RESULT_FIELDS)
    logger.warning("diagnosis %s failed: %s", diagnosis.pk, error.code)
    return diagnosis


def diagnosis_retry(
    *, diagnosis: Diagnosis, gateway: GatewayClient | None = None, base_url: str = ""
) -> Diagnosis:
    """Diagnoses a failed (or long-stuck pending) record's stored image again.

    A record that cannot be retried, or that another request claimed first, comes back
    as it is in the database.
    """
    if not diagnosis.can_retry():
        return diagnosis
    # Claimed only if nobody changed it since it was read: two retries never both run.
    claimed = Diagnosis.objects.filter(
        pk=diagnosis.pk, status=diagnosis.status, updated_at=diagnosis.updated_at
    ).update(status=Diagnosis.Status.PENDING, updated_at=timezone.now())
    diagnosis.refresh_from_db()
    if not claimed:
        return diagnosis
    return diagnosis_run(diagnosis=diagnosis, gateway=gateway, base_url=base_url)


def diagnosis_delete(*, diagnosis: Diagnosis) -> None:
    """Deletes a record; its files go once the deletion commits (signals.py)."""
    diagnosis.delete()


def diagnosis_files_remove(*, names: Iterable[str]) -> None:
    """Removes stored files; one that is already gone is not an error."""
    storage = private_storage()
    for name in names:
        if not name:
            continue
        try:
            storage.delete(name)
        except OSError:
            logger.exception("could not remove a stored diagnosis file")


def diagnosis_result_email_send(*, diagnosis_id: uuid.UUID, base_url: str = "") -> bool:
    """E-mails a finished diagnosis to its owner, if they asked for it; tells whether it sent.

    Runs after the transaction that recorded the result commits, so the e-mail never
    describes a result that was rolled back. The image is not attached.
    """
    diagnosis = (
        Diagnosis.objects.select_related("user")
        .filter(pk=diagnosis_id, status=Diagnosis.Status.DONE)
        .first()
    )
    if diagnosis is None:
        return False
    user = diagnosis.user
    if not user.email_results or not user.email:
        return False
    path = reverse("diagnoses:detail", args=[diagnosis.pk])
    context = {
        "diagnosis": diagnosis,
        "name": user.name or user.email,
        "label": label_display(diagnosis.top_label),
        "scores": [
            {"label": label_display(str(s["label"])), "percent": round(float(s["score"]) * 100, 1)}
            for s in diagnosis.scores
        ],
        "result_url": f"{base_url.rstrip('/')}{path}" if base_url else "",
        "site_name": settings.WEB_SITE_NAME,
    }
    subject = render_to_string("diagnoses/emails/result_subject.txt", context).strip()
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=render_to_string("diagnoses/emails/result.txt", context),
        to=[user.email],
    )
    message.attach_alternative(
        render_to_string("diagnoses/emails/result.html", context), "text/html"
    )
    message.send()
    logger.info("diagnosis %s result e-mailed", diagnosis.pk)
    return True
