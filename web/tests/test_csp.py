"""The Content-Security-Policy: on every page, tight, and nothing in a template needs more."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from web.accounts.models import User
from web.tests.api_support import media
from web.tests.test_diagnoses_services import diagnosed

pytestmark = pytest.mark.django_db

WEB_DIR = Path(__file__).resolve().parent.parent
PUBLIC_PAGES = [
    "/",
    "/accounts/login/",
    "/accounts/register/",
    "/accounts/password-reset/",
    "/accounts/password-reset/sent/",
]
USER_PAGES = [
    "/",
    "/accounts/profile/",
    "/accounts/password/",
    "/accounts/logout/",
    "/diagnose/",
    "/history/",
    "/series/",
]
__all__ = ["media"]  # the fixture: private storage in a folder of the test's own


def _policy(response: object) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]  # type: ignore[index]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def _assert_strict(policy: dict[str, list[str]]) -> None:
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    # No foreign origin anywhere: only 'self', 'none', the page's own sockets and blob:.
    for values in policy.values():
        for value in values:
            assert value in ("'self'", "'none'", "blob:", "ws://testserver"), value


@pytest.mark.parametrize("path", PUBLIC_PAGES)
def test_every_public_page_has_the_strict_policy(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200, path
    _assert_strict(_policy(response))


@pytest.mark.parametrize("path", USER_PAGES)
def test_every_page_of_a_logged_in_user_has_the_strict_policy(
    client_alice: Client, path: str
) -> None:
    response = client_alice.get(path)
    assert response.status_code == 200, path
    _assert_strict(_policy(response))


def test_a_result_page_has_the_strict_policy(
    alice: User, client_alice: Client, media: Path
) -> None:
    record = diagnosed(alice)
    response = client_alice.get(f"/diagnose/{record.pk}/")
    assert response.status_code == 200
    _assert_strict(_policy(response))


def test_connect_src_allows_the_pages_own_websockets_and_no_other_host() -> None:
    assert _policy(Client().get("/"))["connect-src"] == ["'self'", "ws://testserver"]
    secure = Client().get("/", secure=True, headers={"host": "localhost"})
    assert _policy(secure)["connect-src"] == ["'self'", "wss://localhost"]


def test_api_answers_carry_the_policy_too(db: None) -> None:
    response = Client().get("/api/v1/diagnoses/")
    assert response.status_code == 401
    assert _policy(response)["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_the_api_docs_pages_loosen_only_their_styles_and_workers(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    policy = _policy(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["worker-src"] == ["blob:"]
    assert policy["frame-ancestors"] == ["'none'"]
    page = response.content.decode()
    assert "fonts.googleapis.com" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)


def test_the_swagger_ui_set_up_is_a_script_file_of_its_own() -> None:
    response = Client().get("/api/v1/docs/", {"script": ""})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "/api/v1/schema/" in response.content.decode()


# What the strict policy refuses, looked for in every template of the site.
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "<style> element": re.compile(r"<style\b", re.IGNORECASE),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=\s*[\"']", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
}


def _page_templates() -> list[Path]:
    templates = sorted(WEB_DIR.glob("*/templates/**/*.html"))
    # E-mails are not pages: mail clients need inline styles and no CSP applies.
    return [path for path in templates if "email" not in path.parts and "emails" not in path.parts]


def test_no_page_template_holds_what_the_policy_refuses() -> None:
    templates = _page_templates()
    assert len(templates) > 20
    found = [
        f"{path.relative_to(WEB_DIR)}: {what}"
        for path in templates
        for what, pattern in INLINE.items()
        if pattern.search(path.read_text())
    ]
    assert found == []
