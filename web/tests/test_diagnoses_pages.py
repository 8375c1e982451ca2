"""Diagnoses pages through the test client, with Alice (who owns) and Bob (who must not see)."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from web.accounts.models import User
from web.diagnoses import services
from web.diagnoses.models import Diagnosis
from web.tests.test_diagnoses_services import (
    BAD_UPLOADS,
    closed_port,
    diagnosed,
    jpeg,
    jpeg_with_camera_and_gps,
    stored_files,
    upload,
)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """Points the private storage at an empty folder, with a small upload limit."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.WEB_MAX_IMAGE_BYTES = 8000
    return tmp_path / "media"


@pytest.fixture
def gateway_down(settings: Any) -> None:
    """Points the gateway client at a loopback port nothing listens on."""
    settings.GATEWAY_ADDR = f"127.0.0.1:{closed_port()}"


def post_photo(client: Client, data: bytes, name: str = "photo.jpg") -> Any:
    photo = io.BytesIO(data)
    photo.name = name
    return client.post(reverse("diagnoses:upload"), {"image": photo})


# --- the upload page ----------------------------------------------------------------------------


def test_the_upload_page_offers_drag_and_drop_a_file_picker_and_local_script(
    client_alice: Client, settings: Any
) -> None:
    response = client_alice.get("/diagnose/")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'enctype="multipart/form-data"' in page and "data-dropzone" in page
    assert 'type="file" name="image"' in page and 'accept="image/jpeg,image/png"' in page
    assert f'data-max-bytes="{settings.WEB_MAX_IMAGE_BYTES}"' in page
    assert re.search(r'<script src="/static/diagnoses/upload\.js[^"]*" defer>', page)
    assert "not for clinical use" in page.lower()
    assert "https://" not in page  # nothing from a CDN


def test_visitors_who_are_not_logged_in_are_sent_to_log_in(db: None) -> None:
    for path in ("/diagnose/", "/history/"):
        response = Client().get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_a_bad_upload_is_a_400_or_a_413_with_a_clear_message_and_leaves_nothing(
    client_alice: Client, media: Path, case: str
) -> None:
    make, reason = BAD_UPLOADS[case]
    response = post_photo(client_alice, make())
    too_large = reason in ("IMAGE_TOO_LARGE", "IMAGE_TOO_MANY_PIXELS")
    assert response.status_code == (413 if too_large else 400)
    assert 'class="notice notice-error" role="alert" id="upload-error"' in response.content.decode()
    assert Diagnosis.objects.count() == 0
    assert stored_files(media) == []


def test_an_upload_without_a_file_is_a_400(client_alice: Client, media: Path) -> None:
    response = client_alice.post("/diagnose/", {})
    assert response.status_code == 400
    assert "Choose a photo to upload." in response.content.decode()


def test_the_messages_say_what_is_wrong(client_alice: Client, media: Path) -> None:
    pages = {
        case: post_photo(client_alice, make()).content.decode()
        for case, (make, _) in BAD_UPLOADS.items()
    }
    assert "The image is empty." in pages["empty"]
    assert "not a readable image" in pages["not an image"]
    assert "truncated or corrupt" in pages["truncated"]
    assert "too many pixels" in pages["pixel bomb"]
    assert "images are not accepted; send JPEG or PNG" in pages["disallowed type"]
    assert "the limit is" in pages["oversized"]


def test_with_the_gateway_down_the_photo_is_saved_and_offered_for_retry(
    client_alice: Client, alice: User, media: Path, gateway_down: None
) -> None:
    response = post_photo(client_alice, jpeg_with_camera_and_gps())
    diagnosis = Diagnosis.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"/diagnose/{diagnosis.pk}/"
    assert (diagnosis.user, diagnosis.status) == (alice, Diagnosis.Status.FAILED)
    page = client_alice.get(response["Location"]).content.decode()
    assert "The diagnosis service is unavailable right now" in page
    assert "Your upload is saved" in page
    assert f'action="/diagnose/{diagnosis.pk}/retry/"' in page
    assert "127.0.0.1" not in page  # no internal address leaks
    assert len(stored_files(media)) == 2


def test_retrying_while_the_gateway_is_still_down_keeps_the_record_failed(
    client_alice: Client, alice: User, media: Path, gateway_down: None
) -> None:
    post_photo(client_alice, jpeg())
    diagnosis = Diagnosis.objects.get()
    response = client_alice.post(f"/diagnose/{diagnosis.pk}/retry/")
    assert response.status_code == 303
    diagnosis.refresh_from_db()
    assert (diagnosis.status, diagnosis.attempts) == (Diagnosis.Status.FAILED, 2)


# --- the result page and the image --------------------------------------------------------------


def test_the_result_page_shows_image_label_every_bar_the_model_and_the_warning(
    client_alice: Client, alice: User, media: Path
) -> None:
    diagnosis = diagnosed(alice, "atypical_nevus")
    page = client_alice.get(f"/diagnose/{diagnosis.pk}/").content.decode()
    assert f'src="/diagnose/{diagnosis.pk}/image"' in page
    assert "<strong data-top-label>Atypical nevus</strong>" in page
    bars = re.findall(
        r'<span class="prob-label">([^<]+)</span>.*?<rect width="([\d.]+)"', page, re.S
    )
    assert bars == [("Atypical nevus", "82.0"), ("Melanoma", "13.0"), ("Common nevus", "5.0")]
    assert "skin-demo" in page and "2026.11.1" in page and "req-1" in page
    assert "Demo model: not for clinical use." in page
    assert "Try again" not in page


def test_the_owner_gets_the_image_never_to_be_cached(
    client_alice: Client, alice: User, media: Path
) -> None:
    diagnosis = diagnosed(alice)
    for variant in ("image", "thumbnail"):
        response = client_alice.get(f"/diagnose/{diagnosis.pk}/{variant}")
        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        assert response["Cache-Control"] == "no-store, private"
        assert response["X-Content-Type-Options"] == "nosniff"
        body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        assert Image.open(io.BytesIO(body)).format == "JPEG"


def test_stored_images_have_no_public_url(client_alice: Client, alice: User, media: Path) -> None:
    diagnosis = diagnosed(alice)
    for url in (
        f"/media/{diagnosis.image_name}",
        f"/media/diagnoses/{diagnosis.image_name}",
        f"/private-media-is-never-served/diagnoses/{diagnosis.image_name}",
        f"/static/diagnoses/{diagnosis.image_name}",
    ):
        assert client_alice.get(url).status_code == 404


def test_bob_gets_404_for_alices_result_image_retry_and_delete(
    client_bob: Client, alice: User, media: Path
) -> None:
    diagnosis = diagnosed(alice)
    base = f"/diagnose/{diagnosis.pk}"
    for path in (f"{base}/", f"{base}/image", f"{base}/thumbnail", f"{base}/delete/"):
        assert client_bob.get(path).status_code == 404, path
    for path in (f"{base}/retry/", f"{base}/delete/"):
        assert client_bob.post(path).status_code == 404, path
    assert Diagnosis.objects.filter(pk=diagnosis.pk).exists()
    assert len(stored_files(media)) == 2


def test_an_unknown_id_is_the_same_404(client_alice: Client, media: Path) -> None:
    response = client_alice.get("/diagnose/00000000-0000-4000-8000-000000000000/")
    assert response.status_code == 404


# --- history and delete -------------------------------------------------------------------------


def test_history_lists_thumbnails_of_ones_own_records_only(
    client_alice: Client, alice: User, bob: User, media: Path
) -> None:
    mine = diagnosed(alice, "melanoma")
    theirs = diagnosed(bob, "common_nevus")
    page = client_alice.get("/history/").content.decode()
    assert f'src="/diagnose/{mine.pk}/thumbnail"' in page
    assert str(theirs.pk) not in page
    assert "Melanoma" in page and "1 diagnosis" in page


def test_history_filters_by_label_and_date(client_alice: Client, alice: User, media: Path) -> None:
    old = diagnosed(alice, "common_nevus")
    Diagnosis.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    new = diagnosed(alice, "melanoma")
    today = timezone.localdate().isoformat()
    by_label = client_alice.get("/history/", {"label": "common_nevus"}).content.decode()
    assert str(old.pk) in by_label and str(new.pk) not in by_label
    by_date = client_alice.get("/history/", {"date_from": today}).content.decode()
    assert str(new.pk) in by_date and str(old.pk) not in by_date
    backwards = client_alice.get("/history/", {"date_from": today, "date_to": "2000-01-01"})
    assert "The start date is after the end date." in backwards.content.decode()


def test_history_is_paginated_and_pages_keep_the_filter(
    client_alice: Client, alice: User, media: Path
) -> None:
    for _ in range(14):
        diagnosed(alice, "melanoma")
    first = client_alice.get("/history/", {"label": "melanoma"}).content.decode()
    second = client_alice.get("/history/", {"label": "melanoma", "page": "2"}).content.decode()
    assert first.count('class="card history-card"') == 12
    assert second.count('class="card history-card"') == 2
    assert 'href="?label=melanoma&amp;page=2"' in first


def test_deleting_asks_first_then_removes_the_record_and_its_files(
    client_alice: Client, alice: User, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    diagnosis = diagnosed(alice)
    confirm = client_alice.get(f"/diagnose/{diagnosis.pk}/delete/")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post(f"/diagnose/{diagnosis.pk}/delete/")
    assert (response.status_code, response["Location"]) == (303, "/history/")
    assert Diagnosis.objects.count() == 0
    assert stored_files(media) == []
    assert client_alice.get(f"/diagnose/{diagnosis.pk}/image").status_code == 404


def test_history_says_whether_results_are_emailed(
    client_alice: Client, alice: User, media: Path
) -> None:
    assert "E-mail of results is off" in client_alice.get("/history/").content.decode()
    alice.email_results = True
    alice.save()
    assert "E-mail of results is on" in client_alice.get("/history/").content.decode()


def test_a_stored_upload_survives_in_history_when_the_gateway_fails(
    client_alice: Client, alice: User, media: Path, gateway_down: None
) -> None:
    services.diagnosis_submit(user=alice, upload=upload(jpeg()))
    page = client_alice.get("/history/").content.decode()
    assert "Not diagnosed" in page


def test_the_request_id_of_the_page_request_is_the_one_the_record_keeps(
    client_alice: Client, media: Path, gateway_down: None
) -> None:
    photo = io.BytesIO(jpeg())
    photo.name = "photo.jpg"
    response = client_alice.post("/diagnose/", {"image": photo}, HTTP_X_REQUEST_ID="browser-7f3a")
    assert response["X-Request-ID"] == "browser-7f3a"
    assert Diagnosis.objects.get().request_id == "browser-7f3a"
