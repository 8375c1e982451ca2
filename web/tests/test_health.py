"""The health probe and the pages anybody may see: /healthz, the landing page, error pages."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from web.accounts.models import User
from web.core.views import bad_request, page_not_found, permission_denied, server_error
from web.tests.postgres import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_answers_ok_without_touching_the_database() -> None:
    with CaptureQueriesContext(connection) as queries:
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert len(queries) == 0
    assert "no-cache" in response["Cache-Control"]


def test_healthz_answers_whatever_the_host_header_says() -> None:
    response = Client().get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200


def test_healthz_refuses_writes() -> None:
    assert Client().post("/healthz").status_code in (403, 405)


@pytest.mark.django_db
def test_the_landing_page_is_public_and_invites_visitors_in() -> None:
    response = Client().get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "/accounts/register/" in body
    assert "not for clinical use" in body


@pytest.mark.django_db
def test_the_landing_page_greets_a_logged_in_user(client_alice: Client, alice: User) -> None:
    response = client_alice.get("/")
    assert response.status_code == 200
    assert "Welcome, Alice Example" in response.content.decode()


@pytest.mark.django_db
def test_an_unknown_page_is_a_friendly_404_for_visitors_too() -> None:
    response = Client().get("/no/such/page/")
    assert response.status_code == 404
    assert "There is nothing here" in response.content.decode()


@pytest.mark.django_db
def test_an_unknown_page_shows_the_404_page_to_a_user(client_alice: Client) -> None:
    response = client_alice.get("/no/such/page/")
    assert response.status_code == 404
    assert "There is nothing here" in response.content.decode()


@pytest.mark.django_db
def test_every_response_carries_a_request_id() -> None:
    response = Client().get("/", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    assert len(Client().get("/", HTTP_X_REQUEST_ID="bad id!")["X-Request-ID"]) == 32


def test_static_styles_are_served_locally() -> None:
    response = Client().get("/static/core/site.css")
    assert response.status_code == 200
    assert b"--c-primary" in b"".join(response.streaming_content)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_python_m_web_migrates_a_fresh_sqlite_database_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        "WEB_DEBUG": "true",
        "WEB_PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh' / 'db.sqlite3'}",
        "WEB_MEDIA_ROOT": str(tmp_path / "media"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "web"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "python -m web did not start in 60 s"
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=5) as r:
            assert "Log in" in r.read().decode()
        tables = sqlite3.connect(tmp_path / "fresh" / "db.sqlite3").execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
        assert "accounts_user" in {name for (name,) in tables}
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    # After its graceful shutdown uvicorn re-raises the signal it caught, so that whoever
    # started it sees why it ended.
    assert server.returncode == -signal.SIGTERM, output
    assert "series worker" in output and "not ready" not in output  # started after migrating
    assert f"web serving on http://127.0.0.1:{port}" in output


@pytest.mark.django_db
def test_a_server_error_page_renders_without_the_session_or_the_database() -> None:
    with CaptureQueriesContext(connection) as queries:
        response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
    assert len(queries) == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("handler", "status", "text"),
    [
        (bad_request, 400, "could not be understood"),
        (permission_denied, 403, "not allowed"),
        (page_not_found, 404, "There is nothing here"),
    ],
)
def test_error_pages_explain_what_happened(
    handler: Callable[..., HttpResponse], status: int, text: str
) -> None:
    request = RequestFactory().get("/somewhere/")
    request.user = AnonymousUser()
    response = handler(request, Exception("detail never shown"))
    assert response.status_code == status
    assert text in response.content.decode()
    assert "detail never shown" not in response.content.decode()


@pytest.mark.django_db
def test_a_form_without_its_csrf_token_gets_the_expired_form_page(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": alice.email, "password": "x"})
    assert response.status_code == 403
    assert "The form has expired" in response.content.decode()
