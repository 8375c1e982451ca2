"""Diagnoses services and selectors against the database: storing, results, failures, reads."""

from __future__ import annotations

import io
import socket
import struct
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image, ImageDraw

from servicekit.errors import InvalidImage
from web import gateway_client
from web.accounts.models import User
from web.diagnoses import selectors, services
from web.diagnoses.models import Diagnosis

LABELS = ("melanoma", "atypical_nevus", "common_nevus")
GPS_IFD = 0x8825


# --- images -------------------------------------------------------------------------------------


def lesion(size: tuple[int, int] = (160, 120)) -> Image.Image:
    """Returns an RGB picture of a dark blob on skin."""
    image = Image.new("RGB", size, (222, 176, 152))
    w, h = size
    ImageDraw.Draw(image).ellipse((w // 3, h // 3, 2 * w // 3, 2 * h // 3), fill=(92, 58, 40))
    return image


def jpeg(size: tuple[int, int] = (160, 120), *, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    lesion(size).save(buffer, format="JPEG", quality=90, exif=exif or Image.Exif())
    return buffer.getvalue()


def png(size: tuple[int, int] = (160, 120)) -> bytes:
    buffer = io.BytesIO()
    lesion(size).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_with_camera_and_gps(*, orientation: int = 1) -> bytes:
    """Returns a JPEG whose EXIF holds a camera, a date, a GPS position and an orientation."""
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0132] = "2026:01:02 03:04:05"  # DateTime
    exif[0x0112] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (52.0, 31.0, 12.0)
    gps[3] = "E"
    gps[4] = (13.0, 24.0, 36.0)
    return jpeg((160, 80), exif=exif)


def png_header_only(width: int, height: int) -> bytes:
    """Returns a tiny PNG file that claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def gif() -> bytes:
    buffer = io.BytesIO()
    lesion().save(buffer, format="GIF")
    return buffer.getvalue()


def upload(data: bytes, name: str = "IMG_0001 Alice Smith.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


BAD_UPLOADS: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "IMAGE_EMPTY"),
    "not an image": (lambda: b"%PDF-1.7 this is not a picture" * 10, "IMAGE_UNREADABLE"),
    "truncated": (lambda: jpeg((400, 300))[:1500], "IMAGE_TRUNCATED"),
    "pixel bomb": (lambda: png_header_only(50_000, 50_000), "IMAGE_TOO_MANY_PIXELS"),
    "over the pixel cap": (lambda: png_header_only(8000, 6000), "IMAGE_TOO_MANY_PIXELS"),
    "disallowed type": (gif, "IMAGE_TYPE_NOT_ALLOWED"),
    "oversized": (lambda: jpeg() + b"\x00" * 9000, "IMAGE_TOO_LARGE"),
}


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """Points the private storage at an empty folder of this test's own."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.WEB_MAX_IMAGE_BYTES = 8000
    return tmp_path / "media"


def stored_files(media: Path) -> list[Path]:
    return sorted(p for p in media.rglob("*") if p.is_file()) if media.exists() else []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def a_result(top: str = "melanoma", request_id: str = "req-1") -> gateway_client.Diagnosis:
    """Returns what the gateway answers for one image, with top as the top label."""
    others = [label for label in LABELS if label != top]
    scores = (
        gateway_client.ClassScore(top, 0.82),
        gateway_client.ClassScore(others[0], 0.13),
        gateway_client.ClassScore(others[1], 0.05),
    )
    return gateway_client.Diagnosis(
        disease="skin",
        top_label=top,
        top_score=0.82,
        scores=scores,
        model_name="skin-demo",
        model_version="2026.11.1",
        demo_model=True,
        request_id=request_id,
        elapsed_ms=12.5,
    )


def diagnosed(user: User, top: str = "melanoma") -> Diagnosis:
    """Returns a stored upload of user's with a recorded result."""
    diagnosis = services.diagnosis_create(user=user, upload=upload(jpeg()))
    return services.diagnosis_record_result(diagnosis=diagnosis, result=a_result(top))


# --- storing an upload --------------------------------------------------------------------------


@pytest.mark.postgres
def test_it_stores_an_upload_as_pending_under_a_server_made_name(alice: User, media: Path) -> None:
    diagnosis = services.diagnosis_create(user=alice, upload=upload(jpeg()))
    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.PENDING
    assert (diagnosis.user, diagnosis.disease) == (alice, "skin")
    assert (diagnosis.image_width, diagnosis.image_height, diagnosis.image_format) == (
        160,
        120,
        "JPEG",
    )
    assert diagnosis.prepare_ms is not None and diagnosis.prepare_ms > 0
    files = stored_files(media)
    assert [p.relative_to(media).as_posix() for p in files] == [
        f"diagnoses/images/{diagnosis.pk.hex}.jpg",
        f"diagnoses/thumbnails/{diagnosis.pk.hex}.jpg",
    ]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert "Alice" not in diagnosis.image_name


def test_it_strips_exif_and_gps_and_turns_the_image_upright(alice: User, media: Path) -> None:
    original = jpeg_with_camera_and_gps(orientation=6)  # 160x80, to be rotated a quarter turn
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)
    diagnosis = services.diagnosis_create(user=alice, upload=upload(original))
    stored = (media / "diagnoses" / diagnosis.image_name).read_bytes()
    image = Image.open(io.BytesIO(stored))
    assert image.size == (80, 160) == (diagnosis.image_width, diagnosis.image_height)
    assert not image.getexif() and "exif" not in image.info
    assert b"SecretCam" not in stored and b"2026:01:02" not in stored


def test_it_accepts_bytes_the_server_fetched_as_well_as_a_form_file(
    alice: User, media: Path
) -> None:
    diagnosis = services.diagnosis_create(user=alice, upload=png())
    assert diagnosis.image_format == "PNG"
    with pytest.raises(InvalidImage):
        services.diagnosis_create(user=alice, upload=b"x" * 9000)
    assert Diagnosis.objects.count() == 1


def test_a_png_stays_a_lossless_png(alice: User, media: Path) -> None:
    diagnosis = services.diagnosis_create(user=alice, upload=upload(png(), "x.png"))
    stored = (media / "diagnoses" / diagnosis.image_name).read_bytes()
    assert diagnosis.image_format == "PNG" and diagnosis.image_name.endswith(".png")
    assert Image.open(io.BytesIO(stored)).tobytes() == lesion().tobytes()


@pytest.mark.postgres
@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_it_refuses_a_bad_upload_and_leaves_no_row_and_no_file(
    alice: User, media: Path, case: str
) -> None:
    make, reason = BAD_UPLOADS[case]
    with pytest.raises(InvalidImage) as caught:
        services.diagnosis_create(user=alice, upload=upload(make()))
    assert caught.value.reason == reason
    assert caught.value.message
    assert Diagnosis.objects.count() == 0
    assert stored_files(media) == []


# --- results and failures -----------------------------------------------------------------------


@pytest.mark.postgres
def test_a_result_keeps_every_score_the_model_and_the_request_id(alice: User, media: Path) -> None:
    diagnosis = diagnosed(alice)
    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.DONE
    assert (diagnosis.top_label, diagnosis.top_score) == ("melanoma", 0.82)
    assert diagnosis.scores == [
        {"label": "melanoma", "score": 0.82},
        {"label": "atypical_nevus", "score": 0.13},
        {"label": "common_nevus", "score": 0.05},
    ]
    assert (diagnosis.model_name, diagnosis.model_version, diagnosis.demo_model) == (
        "skin-demo",
        "2026.11.1",
        True,
    )
    assert (diagnosis.request_id, diagnosis.gateway_ms) == ("req-1", 12.5)
    assert diagnosis.diagnosed_at is not None


def test_with_the_gateway_down_the_upload_is_kept_and_the_record_fails_retryably(
    alice: User, media: Path, settings: Any
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{closed_port()}"
    diagnosis = services.diagnosis_submit(user=alice, upload=upload(jpeg()))
    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.FAILED
    assert (diagnosis.error_code, diagnosis.retryable, diagnosis.attempts) == (
        "UNAVAILABLE",
        True,
        1,
    )
    assert "unavailable" in diagnosis.error_message
    assert len(diagnosis.request_id) == 32
    assert diagnosis.can_retry()
    assert len(stored_files(media)) == 2


def test_a_retry_that_fails_again_counts_the_attempt_and_stays_retryable(
    alice: User, media: Path, settings: Any
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{closed_port()}"
    diagnosis = services.diagnosis_submit(user=alice, upload=upload(jpeg()))
    diagnosis = services.diagnosis_retry(diagnosis=diagnosis)
    assert (diagnosis.status, diagnosis.attempts) == (Diagnosis.Status.FAILED, 2)
    assert diagnosis.can_retry()


def test_a_finished_record_is_not_sent_again(alice: User, media: Path, settings: Any) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{closed_port()}"
    diagnosis = diagnosed(alice)
    assert services.diagnosis_retry(diagnosis=diagnosis).status == Diagnosis.Status.DONE
    assert diagnosis.attempts == 0


def test_a_record_stuck_pending_after_a_restart_may_be_retried(alice: User, media: Path) -> None:
    diagnosis = services.diagnosis_create(user=alice, upload=upload(jpeg()))
    assert not diagnosis.can_retry()
    later = timezone.now() + timedelta(minutes=5)
    assert diagnosis.can_retry(now=later)


def test_a_failure_the_image_caused_is_not_offered_for_retry(alice: User, media: Path) -> None:
    diagnosis = services.diagnosis_create(user=alice, upload=upload(jpeg()))
    error = gateway_client.GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "the image is too small for this model",
        reason="IMAGE_TOO_SMALL",
        request_id="r-9",
    )
    diagnosis = services.diagnosis_record_failure(diagnosis=diagnosis, error=error)
    assert diagnosis.error_message == "The image is too small for this model."
    assert not diagnosis.can_retry()


# --- deleting -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_deleting_a_record_removes_its_files_once_committed(
    alice: User, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    diagnosis = diagnosed(alice)
    with django_capture_on_commit_callbacks(execute=True):
        services.diagnosis_delete(diagnosis=diagnosis)
    assert Diagnosis.objects.count() == 0
    assert stored_files(media) == []


def test_deleting_a_user_removes_their_files_too(
    alice: User, bob: User, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    diagnosed(alice)
    kept = diagnosed(bob)
    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()
    assert [p.stem for p in stored_files(media)] == [kept.pk.hex, kept.pk.hex]


# --- selectors ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_user_reads_only_their_own_records(alice: User, bob: User, media: Path) -> None:
    mine = diagnosed(alice)
    theirs = diagnosed(bob)
    assert list(selectors.diagnosis_list(user=alice)) == [mine]
    assert selectors.diagnosis_get(user=alice, diagnosis_id=mine.pk) == mine
    assert selectors.diagnosis_get(user=alice, diagnosis_id=theirs.pk) is None


@pytest.mark.postgres
def test_the_list_filters_by_label_and_by_day_newest_first(alice: User, media: Path) -> None:
    old = diagnosed(alice, "common_nevus")
    Diagnosis.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    middle = diagnosed(alice, "melanoma")
    new = diagnosed(alice, "common_nevus")
    today = timezone.localdate()
    assert list(selectors.diagnosis_list(user=alice)) == [new, middle, old]
    assert list(selectors.diagnosis_list(user=alice, label="common_nevus")) == [new, old]
    assert list(selectors.diagnosis_list(user=alice, date_from=today)) == [new, middle]
    assert list(selectors.diagnosis_list(user=alice, date_to=today - timedelta(days=1))) == [old]
    assert selectors.diagnosis_labels(user=alice) == ["common_nevus", "melanoma"]


def test_the_stored_files_open_with_their_content_types(alice: User, media: Path) -> None:
    diagnosis = services.diagnosis_create(user=alice, upload=upload(png(), "p.png"))
    image, image_type = selectors.diagnosis_file(diagnosis=diagnosis, variant="image")
    thumb, thumb_type = selectors.diagnosis_file(diagnosis=diagnosis, variant="thumbnail")
    with image, thumb:
        assert (image_type, thumb_type) == ("image/png", "image/jpeg")
        assert Image.open(thumb).size == (160, 120)  # never upscaled
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"
