"""A hostile or malformed series zip is refused at upload: 400 naming the entry, no row, no file."""

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
from web.series.models import SeriesJob

pytestmark = pytest.mark.django_db

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
