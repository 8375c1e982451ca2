"""Series zips checked at upload: hostile ones 400, oversized ones 413 unread; no row, no file.

The hostile ones are refused by the MRI service itself (InspectSeries through the gateway,
both real and in-process: web/tests/series_stack.py), with its message and reason.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from mri_service.tests.hostile_zips import (
    phantom_zip,
    rewrite,
    symlink_entry,
    truncate,
    zip_bytes,
)
from web.accounts.models import User
from web.series import services
from web.series.models import SeriesJob

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("series_gateway")]

SECOND = "case/pre/IM0002.dcm"

Build = Callable[[Path, Path], Path]  # (valid zip, target path) -> hostile zip


@dataclass(frozen=True)
class Hostile:
    build: Build
    names: str  # what the message must contain: the offending entry, quoted, or the fault


def _adding(name: Any, data: bytes = b"payload") -> Build:
    return lambda valid, target: rewrite(valid, target, add=[(name, data)])


def _replacing(name: str, data: bytes) -> Build:
    return lambda valid, target: rewrite(valid, target, change={name: data})


def _truncated(valid: Path, target: Path) -> Path:
    target.write_bytes(valid.read_bytes())
    return truncate(target)


HOSTILE: dict[str, Hostile] = {
    "zip-slip": Hostile(_adding("case/../../evil.dcm"), "'case/../../evil.dcm'"),
    "symlink": Hostile(
        _adding(*symlink_entry("case/pre/IM0009.dcm")), "'case/pre/IM0009.dcm' is a symbolic link"
    ),
    "nested-archive": Hostile(_replacing(SECOND, zip_bytes({"a.dcm": b"x" * 100})), f"'{SECOND}'"),
    "zip-bomb-ratio": Hostile(_replacing(SECOND, bytes(300_000)), f"'{SECOND}'"),
    "missing-phase": Hostile(
        lambda valid, target: rewrite(valid, target, remove=lambda name: "/3rd_pass/" in name),
        "'case/3rd_pass/'",
    ),
    "not-dicom": Hostile(
        _replacing(SECOND, b"Just some notes, not a DICOM file." * 8), f"'{SECOND}'"
    ),
    "truncated-zip": Hostile(_truncated, "incomplete or damaged"),
}


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture(scope="module")
def valid_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom_zip(tmp_path_factory.mktemp("valid") / "series.zip", slices=4)


def stored_files(media: Path) -> list[str]:
    """Every file under the media root, walked whole."""
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


def named(data: bytes, name: str = "case.zip") -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


def send_chunked(client: Client, data: bytes) -> tuple[int, str]:
    """Uploads the zip the page's way, in two chunks; returns (status, the error or job URL)."""
    half = len(data) // 2
    first = client.post(
        "/series/upload/",
        {"upload_id": "", "offset": 0, "total": len(data), "chunk": named(data[:half])},
    )
    assert first.status_code == 200
    last = client.post(
        "/series/upload/",
        {
            "upload_id": first.json()["upload_id"],
            "offset": half,
            "total": len(data),
            "chunk": named(data[half:]),
        },
    )
    body = last.json()
    return last.status_code, body["url"] if last.status_code == 201 else body["error"]["message"]


def send_api(client: Client, data: bytes) -> tuple[int, str]:
    """Uploads the zip through the REST API; returns (status, the error or job URL)."""
    answer = client.post("/api/v1/series/", {"series": named(data)})
    body = answer.json()
    return answer.status_code, body["url"] if answer.status_code == 202 else body["error"][
        "message"
    ]


def send_form(client: Client, data: bytes) -> tuple[int, str]:
    """Uploads the zip with the page's plain form (no script); returns (status, page or URL)."""
    answer = client.post("/series/", {"series": named(data)})
    return answer.status_code, answer.get("Location", "") or answer.content.decode()


@pytest.fixture
def api_alice(alice: User) -> Client:
    return Client(headers={"Authorization": f"Token {Token.objects.create(user=alice).key}"})


@pytest.mark.parametrize("channel", ["chunked", "api"])
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_series_is_refused_at_upload_naming_the_entry_and_leaving_nothing(
    kind: str,
    channel: str,
    valid_zip: Path,
    tmp_path: Path,
    media: Path,
    client_alice: Client,
    api_alice: Client,
) -> None:
    hostile = HOSTILE[kind].build(valid_zip, tmp_path / "hostile.zip").read_bytes()
    client, send = (client_alice, send_chunked) if channel == "chunked" else (api_alice, send_api)

    status, message = send(client, hostile)

    assert status == 400
    assert HOSTILE[kind].names in message
    assert SeriesJob.objects.count() == 0
    assert stored_files(media) == []
    status, url = send(client, valid_zip.read_bytes())
    assert status in (201, 202) and SeriesJob.objects.get().pk.hex in url.replace("-", "")


def test_the_plain_form_shows_the_services_message_on_the_upload_page(
    valid_zip: Path, tmp_path: Path, media: Path, client_alice: Client
) -> None:
    hostile = HOSTILE["zip-slip"].build(valid_zip, tmp_path / "hostile.zip").read_bytes()

    status, page = send_form(client_alice, hostile)

    assert status == 400 and "case/../../evil.dcm" in page
    assert SeriesJob.objects.count() == 0 and stored_files(media) == []
    status, location = send_form(client_alice, valid_zip.read_bytes())
    assert status == 303 and location == f"/series/{SeriesJob.objects.get().pk}/"


# --- whole-zip uploads: the size is checked before the zip is read or stored ------------------

CAP = 256 * 1024


@pytest.fixture
def small_cap(settings: Any) -> int:
    """A series limit small enough to go past in a test."""
    settings.WEB_MAX_SERIES_BYTES = CAP
    return CAP


def _body_was_read(response: Any) -> bool:
    """Tells whether the view read any of the request body (the test client's own record)."""
    return bool(response.wsgi_request.META["wsgi.input"].read_started)


def _oversized() -> bytes:
    """A body that cannot fit: the limit plus everything a multipart body may add, plus one."""
    return b"PK\x03\x04" + bytes(CAP + services.MULTIPART_ALLOWANCE_BYTES)


@pytest.mark.parametrize(
    ("content_length", "refused"),
    [
        (None, False),
        ("", False),
        ("not a number", False),
        (str(CAP + services.MULTIPART_ALLOWANCE_BYTES), False),
        (str(CAP + services.MULTIPART_ALLOWANCE_BYTES + 1), True),
    ],
)
def test_the_declared_length_is_refused_only_past_the_limit_and_its_allowance(
    small_cap: int, content_length: str | None, refused: bool
) -> None:
    if not refused:
        services.series_upload_check_declared(content_length=content_length)
        return
    with pytest.raises(services.UploadRefused) as error:
        services.series_upload_check_declared(content_length=content_length)
    assert (error.value.http_status, error.value.reason) == (413, "SERIES_TOO_LARGE")


def test_the_api_refuses_an_oversized_body_unread_with_413(
    small_cap: int, api_alice: Client, media: Path
) -> None:
    response = api_alice.post("/api/v1/series/", {"series": named(_oversized())})

    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["code"], error["reason"]) == ("PAYLOAD_TOO_LARGE", "SERIES_TOO_LARGE")
    assert "the limit for a series is 0.2 MB" in error["message"]
    assert not _body_was_read(response)
    assert SeriesJob.objects.count() == 0 and not media.exists()


def test_the_api_refuses_an_oversized_body_before_asking_who_sent_it(
    small_cap: int, client: Client
) -> None:
    # A session's CSRF check would parse the body: the size comes first, for everybody.
    response = client.post("/api/v1/series/", {"series": named(_oversized())})
    assert response.status_code == 413 and not _body_was_read(response)


def test_the_plain_form_refuses_an_oversized_body_unread_on_the_page(
    small_cap: int, client_alice: Client, media: Path
) -> None:
    response = client_alice.post("/series/", {"series": named(_oversized())})

    assert response.status_code == 413
    assert "the limit for a series is 0.2 MB" in response.content.decode()
    assert not _body_was_read(response)
    assert SeriesJob.objects.count() == 0 and not media.exists()


@pytest.mark.parametrize("channel", ["api", "form"])
def test_a_zip_over_the_limit_in_a_body_that_fits_is_refused_before_it_is_stored(
    small_cap: int, channel: str, client_alice: Client, api_alice: Client, media: Path
) -> None:
    # The body is within the allowance, the file one byte over: its size refuses it.
    data = b"PK\x03\x04" + bytes(CAP - 3)
    if channel == "api":
        status, message = send_api(api_alice, data)
    else:
        status, message = send_form(client_alice, data)

    assert status == 413
    assert "the limit is 0.2 MB" in message
    # Nothing was written: not even the folder a copy would have gone to.
    assert SeriesJob.objects.count() == 0 and not media.exists()


def test_the_service_refuses_on_the_declared_size_without_copying(
    small_cap: int, alice: User, media: Path
) -> None:
    for size, status, reason in ((CAP + 1, 413, "SERIES_TOO_LARGE"), (0, 400, "SERIES_EMPTY")):
        with pytest.raises(services.UploadRefused) as refused:
            services.series_job_create(user=alice, upload=io.BytesIO(b"PK\x03\x04"), size=size)
        assert (refused.value.http_status, refused.value.reason) == (status, reason)
    assert not media.exists()


def test_a_zip_spooled_to_disk_is_streamed_into_storage_whole(
    settings: Any, valid_zip: Path, api_alice: Client, media: Path
) -> None:
    # Past this size Django keeps the upload in a temporary file, not in memory.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    data = valid_zip.read_bytes()
    assert len(data) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE

    status, _ = send_api(api_alice, data)

    assert status == 202
    job = SeriesJob.objects.get()
    assert stored_files(media) == [f"series/zips/{job.pk.hex}.zip"]
    assert (media / "series" / "zips" / f"{job.pk.hex}.zip").read_bytes() == data
    assert job.zip_bytes == len(data)


def test_the_plain_form_still_needs_its_csrf_token(alice: User, valid_zip: Path) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post("/series/", {"series": named(valid_zip.read_bytes())})

    assert response.status_code == 403
    assert SeriesJob.objects.count() == 0
    page = client.get("/series/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/series/", {"series": named(valid_zip.read_bytes()), "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 303
