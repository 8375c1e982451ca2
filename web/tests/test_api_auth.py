"""API authentication (token, session with CSRF), tokens, CORS and the error body of each kind."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.authtoken.models import Token

from web.accounts.models import User
from web.tests import api_support
from web.tests.api_support import API, assert_error, upload
from web.tests.conftest import ALICE_PASSWORD
from web.tests.test_diagnoses_services import diagnosed, jpeg

ENDPOINTS = [
    ("get", f"{API}/diagnoses/"),
    ("post", f"{API}/diagnoses/"),
    ("get", f"{API}/diagnoses/00000000-0000-4000-8000-000000000000/"),
    ("delete", f"{API}/diagnoses/00000000-0000-4000-8000-000000000000/"),
    ("post", f"{API}/diagnoses/00000000-0000-4000-8000-000000000000/retry/"),
    ("get", f"{API}/diagnoses/00000000-0000-4000-8000-000000000000/image/"),
    ("get", f"{API}/models/"),
]
media = api_support.media  # the fixture: private storage in a folder of the test's own
CSRF_SECRET = "abcdefghijklmnopqrstuvwxyzABCDEF"  # 32 characters: a valid unmasked CSRF secret


def token_for(client: Client, email: str, password: str, **headers: str) -> Any:
    return client.post(
        f"{API}/auth/token/",
        {"email": email, "password": password},
        content_type="application/json",
        headers=headers,
    )


# --- who may call ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_without_credentials_every_endpoint_is_401_asking_for_a_token(
    method: str, path: str, db: None
) -> None:
    response = getattr(Client(), method)(path)
    error = assert_error(response, 401, "UNAUTHENTICATED")
    assert error["message"] == "Authentication credentials were not provided."
    assert response["WWW-Authenticate"] == "Token"


def test_a_token_that_does_not_exist_is_401(db: None) -> None:
    client = Client(headers={"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"})
    error = assert_error(client.get(f"{API}/diagnoses/"), 401, "UNAUTHENTICATED")
    assert error["message"] == "Invalid token."


@pytest.mark.postgres
def test_alice_exchanges_her_password_for_a_token_and_calls_the_api_with_it(
    alice: User, media: Path
) -> None:
    diagnosed(alice)
    response = token_for(Client(), "Alice@Example.com", ALICE_PASSWORD)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "token": Token.objects.get(user=alice).key,
        "email": "alice@example.com",
        "name": "Alice Example",
    }
    client = Client(headers={"Authorization": f"Token {body['token']}"})
    assert client.get(f"{API}/diagnoses/").json()["count"] == 1
    # Asking again gives the same token.
    assert token_for(Client(), "alice@example.com", ALICE_PASSWORD).json() == body


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("alice@example.com", "not-her-password"),
        ("nobody@example.com", ALICE_PASSWORD),
        ("not an address", ALICE_PASSWORD),
    ],
)
def test_a_wrong_log_in_is_401_with_one_message_whatever_was_wrong(
    email: str, password: str, alice: User
) -> None:
    response = token_for(Client(), email, password)
    error = assert_error(response, 401, "UNAUTHENTICATED", "LOGIN_FAILED")
    assert response["WWW-Authenticate"] == "Token"
    assert error["message"] == (
        "The e-mail address or password is not right. Check both and try again."
    )
    assert not Token.objects.exists()


def test_a_token_request_without_a_password_is_a_400_naming_the_field(db: None) -> None:
    response = Client().post(
        f"{API}/auth/token/", {"email": "alice@example.com"}, content_type="application/json"
    )
    assert assert_error(response, 400, "INVALID_ARGUMENT")["fields"] == {
        "password": ["This field is required."]
    }


@pytest.mark.postgres
def test_failed_token_requests_are_delayed_with_the_log_in_page(alice: User) -> None:
    for _ in range(4):  # WEB_LOGIN_FREE_FAILURES (3), then the first delay
        assert token_for(Client(), "alice@example.com", "guess-again-123").status_code == 401
    # While the delay runs even the right password is not checked, by the API or the page.
    response = token_for(Client(), "alice@example.com", ALICE_PASSWORD)
    error = assert_error(response, 429, "RESOURCE_EXHAUSTED", "LOGIN_THROTTLED")
    assert error["message"].startswith("Too many failed log-in attempts.")
    assert response["Retry-After"] == "1"
    assert not Token.objects.exists()
    page = Client().post(
        "/accounts/login/", {"username": "alice@example.com", "password": ALICE_PASSWORD}
    )
    assert page.status_code == 429
    # Her own client elsewhere gets its token at once.
    elsewhere = token_for(Client(REMOTE_ADDR="198.51.100.7"), "alice@example.com", ALICE_PASSWORD)
    assert elsewhere.status_code == 200


def test_failed_token_requests_are_delayed_per_client_address(
    alice: User, bob: User, settings: Any
) -> None:
    settings.WEB_LOGIN_MAX_FAILURES_PER_ADDRESS = 2
    token_for(Client(), "alice@example.com", "wrong-password-1")
    token_for(Client(), "bob@example.com", "wrong-password-2")
    token_for(Client(), "dave@example.com", "wrong-password-3")
    response = token_for(Client(), "carol@example.com", "anything-at-all")
    assert_error(response, 429, "RESOURCE_EXHAUSTED", "LOGIN_THROTTLED")
    assert response["Retry-After"] == "1"


@pytest.mark.postgres
def test_a_session_log_in_works_and_writes_need_the_csrf_token(alice: User, media: Path) -> None:
    record, other = diagnosed(alice), diagnosed(alice)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.get(f"{API}/diagnoses/").json()["count"] == 2

    refused = browser.delete(f"{API}/diagnoses/{record.pk}/")
    error = assert_error(refused, 403, "PERMISSION_DENIED")
    assert "CSRF" in error["message"]

    browser.cookies[django_settings.CSRF_COOKIE_NAME] = CSRF_SECRET
    allowed = browser.delete(f"{API}/diagnoses/{other.pk}/", headers={"X-CSRFToken": CSRF_SECRET})
    assert allowed.status_code == 204


def test_a_token_needs_no_csrf_token(alice: User, media: Path) -> None:
    record = diagnosed(alice)
    client = Client(
        enforce_csrf_checks=True,
        headers={"Authorization": f"Token {Token.objects.create(user=alice).key}"},
    )
    assert client.delete(f"{API}/diagnoses/{record.pk}/").status_code == 204
    fresh = token_for(Client(enforce_csrf_checks=True), "alice@example.com", ALICE_PASSWORD)
    assert fresh.status_code == 200


# --- CORS ----------------------------------------------------------------------------------------


def preflight(origin: str) -> Any:
    return Client().options(
        f"{API}/diagnoses/",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_a_preflight_from_an_allowed_origin_gets_the_cors_headers(settings: Any, db: None) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    response = preflight("https://app.example.com")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "authorization" in response["Access-Control-Allow-Headers"]


def test_a_preflight_from_another_origin_gets_none(settings: Any, db: None) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    response = preflight("https://evil.example.net")
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Origin" not in preflight("https://app.example.com.evil.net")


# --- the error body, whatever the error ---------------------------------------------------------


def test_an_unknown_api_url_is_a_404_in_the_error_shape(db: None) -> None:
    assert_error(Client().get(f"{API}/nothing-here/"), 404, "NOT_FOUND")
    error = assert_error(Client().post(f"{API}/diagnoses"), 404, "NOT_FOUND")
    assert "end with a slash" in error["message"]


def test_a_method_an_endpoint_does_not_have_is_a_405(client_alice: Client) -> None:
    response = client_alice.put(f"{API}/diagnoses/", {}, content_type="application/json")
    error = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert error["message"] == 'Method "PUT" not allowed.'


def test_asking_for_html_is_a_406_answered_in_json(client_alice: Client) -> None:
    response = client_alice.get(f"{API}/diagnoses/", headers={"Accept": "text/html"})
    assert_error(response, 406, "NOT_ACCEPTABLE")


def test_malformed_json_is_a_400(client_alice: Client) -> None:
    response = client_alice.post(f"{API}/diagnoses/", "{not json", content_type="application/json")
    assert assert_error(response, 400, "INVALID_ARGUMENT")["message"].startswith("JSON parse error")


def test_a_multipart_body_with_too_many_fields_is_a_400(
    client_alice: Client, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    response = client_alice.post(f"{API}/diagnoses/", {f"field{i}": "x" for i in range(10)})
    assert assert_error(response, 400, "INVALID_ARGUMENT")["message"] == (
        "The request is not valid."
    )


def test_an_unexpected_failure_is_a_500_that_tells_nothing_but_is_logged(
    client_alice: Client, settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("the private storage cannot be created here")
    settings.MEDIA_ROOT = str(blocker)
    with caplog.at_level(logging.ERROR, logger="web.api.exceptions"):
        response = upload(client_alice, jpeg(), request_id="api-crash-0001")
    error = assert_error(response, 500, "INTERNAL")
    assert error == {
        "code": "INTERNAL",
        "message": "Something went wrong on our side. Please try again later.",
        "request_id": "api-crash-0001",
    }
    assert str(tmp_path) not in response.content.decode()
    [record] = [r for r in caplog.records if r.name == "web.api.exceptions"]
    assert record.exc_info is not None and record.request_id == "api-crash-0001"  # type: ignore[attr-defined]


def test_the_error_carries_the_callers_request_id(db: None) -> None:
    response = Client().get(f"{API}/diagnoses/", headers={"X-Request-ID": "caller-77"})
    assert assert_error(response, 401, "UNAUTHENTICATED")["request_id"] == "caller-77"
