"""What the API tests share: the fake gateway they talk to, calls to the API and the error shape."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from web.accounts.models import User
from web.tests.fake_gateway import FakeGateway, abort

API = "/api/v1"


@dataclass
class ApiFakeGateway(FakeGateway):
    """The fake gateway, told which status to end Diagnose with (none: it answers)."""

    fail_with: str = ""

    def Diagnose(self, request: Any, context: Any) -> Any:
        if self.fail_with:
            self._seen(context)
            code = grpc.StatusCode[self.fail_with]
            abort(context, code, "the model cannot use an image this small", "IMAGE_TOO_SMALL")
        return super().Diagnose(request, context)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """Points the private storage at an empty folder, with a small upload limit."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.WEB_MAX_IMAGE_BYTES = 8000
    return tmp_path / "media"


def token_client(user: User) -> Client:
    return Client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})


def upload(client: Client, data: bytes, request_id: str = "", **fields: Any) -> Any:
    photo = io.BytesIO(data)
    photo.name = "IMG_0042 Alice.jpg"
    headers = {"X-Request-ID": request_id} if request_id else {}
    return client.post(f"{API}/diagnoses/", {"image": photo, **fields}, headers=headers)


def by_url(client: Client, url: str, **body: Any) -> Any:
    return client.post(
        f"{API}/diagnoses/", {"image_url": url, **body}, content_type="application/json"
    )


def assert_error(response: Any, status: int, code: str, reason: str = "") -> dict[str, Any]:
    """Checks the one error shape and returns the error object."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    error = body["error"]
    assert {"code", "message", "request_id"} <= set(error)
    assert error["code"] == code
    assert error["message"] and error["message"].endswith(".")
    assert error["request_id"] == response["X-Request-ID"]
    if reason:
        assert error["reason"] == reason
    return dict(error)
