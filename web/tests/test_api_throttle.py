"""API rates: per user, per anonymous address, uploads and token requests; 429 with Retry-After."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from pytest_django import Settings
from rest_framework.authtoken.models import Token

from servicekit.settings import SettingsError
from web.accounts.models import LoginFailureCounter, User
from web.api import conf
from web.diagnoses.models import Diagnosis
from web.tests.api_support import API, assert_error
from web.tests.conftest import ALICE_PASSWORD

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _token_client(user: User, **extra: Any) -> Client:
    token, _created = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}", **extra)


def _assert_rate_limited(response: Any, window_s: int = 60) -> None:
    assert_error(response, 429, "RESOURCE_EXHAUSTED", "RATE_LIMITED")
    assert 0 < int(response["Retry-After"]) <= window_s


def test_a_user_past_the_rate_gets_429_with_retry_after_and_others_do_not(
    alice: User, bob: User, settings: Settings
) -> None:
    settings.WEB_API_RATE_USER = "3/minute"
    alice_api = _token_client(alice)
    for _ in range(3):
        assert alice_api.get(f"{API}/diagnoses/").status_code == 200
    _assert_rate_limited(alice_api.get(f"{API}/diagnoses/"))
    # Her session counts as the same user; Bob has a rate of his own.
    session = Client()
    session.force_login(alice)
    _assert_rate_limited(session.get(f"{API}/diagnoses/"))
    assert _token_client(bob).get(f"{API}/diagnoses/").status_code == 200


def test_the_rate_window_ends(alice: User, settings: Settings) -> None:
    settings.WEB_API_RATE_USER = "1/minute"
    api = _token_client(alice)
    assert api.get(f"{API}/diagnoses/").status_code == 200
    _assert_rate_limited(api.get(f"{API}/diagnoses/"))
    LoginFailureCounter.objects.filter(scope=LoginFailureCounter.Scope.API_USER).update(
        window_start=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    )
    assert api.get(f"{API}/diagnoses/").status_code == 200


def test_uploads_have_a_stricter_rate_than_reads(alice: User, settings: Settings) -> None:
    settings.WEB_API_RATE_UPLOAD = "1/minute"
    api = _token_client(alice)
    # A refused upload counts too: the rate is on requests, not on what they hold.
    assert api.post(f"{API}/diagnoses/", {}, format="multipart").status_code in (400, 415)
    _assert_rate_limited(api.post(f"{API}/diagnoses/", {}, content_type="application/json"))
    _assert_rate_limited(api.post(f"{API}/series/", {}))
    assert not Diagnosis.objects.exists()
    # Reads are not uploads.
    assert api.get(f"{API}/diagnoses/").status_code == 200


def test_series_uploads_share_the_upload_rate(alice: User, settings: Settings) -> None:
    settings.WEB_API_RATE_UPLOAD = "1/minute"
    api = _token_client(alice)
    assert api.post(f"{API}/series/", {}).status_code == 400
    _assert_rate_limited(api.post(f"{API}/series/", {}))


def _token(client: Client, password: str, email: str = "alice@example.com") -> Any:
    return client.post(
        f"{API}/auth/token/",
        {"email": email, "password": password},
        content_type="application/json",
    )


def test_token_requests_have_a_rate_per_address_right_or_wrong(
    alice: User, settings: Settings
) -> None:
    settings.WEB_API_RATE_TOKEN = "2/minute"
    here = Client(REMOTE_ADDR="198.51.100.9")
    assert _token(here, ALICE_PASSWORD).status_code == 200
    assert _token(here, "wrong-password-1", email="bob@example.com").status_code == 401
    _assert_rate_limited(_token(here, ALICE_PASSWORD))
    assert _token(Client(REMOTE_ADDR="198.51.100.10"), ALICE_PASSWORD).status_code == 200


def test_anonymous_requests_have_a_rate_per_address(alice: User, settings: Settings) -> None:
    settings.WEB_API_RATE_ANON = "1/minute"
    here = Client(REMOTE_ADDR="198.51.100.11")
    assert _token(here, ALICE_PASSWORD).status_code == 200
    _assert_rate_limited(_token(here, ALICE_PASSWORD))
    # A logged-in caller is counted per user, not against the address.
    assert (
        _token_client(alice, REMOTE_ADDR="198.51.100.11").get(f"{API}/diagnoses/").status_code
        == 200
    )


def test_rate_counters_hold_neither_user_nor_address_in_clear(
    alice: User, settings: Settings
) -> None:
    _token_client(alice).get(f"{API}/diagnoses/")
    _token(Client(REMOTE_ADDR="198.51.100.12"), "wrong-password-1")
    keys = " ".join(LoginFailureCounter.objects.values_list("key", flat=True))
    assert "198.51.100.12" not in keys
    assert f"user:{alice.pk}" not in keys
    assert LoginFailureCounter.objects.filter(scope="api-user").count() == 1


@pytest.mark.parametrize(
    ("rate", "expected"),
    [("600/minute", (600, 60)), ("20/m", (20, 60)), ("5/s", (5, 1)), ("1000/day", (1000, 86400))],
)
def test_rates_are_read_in_drfs_notation(rate: str, expected: tuple[int, int]) -> None:
    count, window = conf.parse_rate(rate)
    assert (count, window.total_seconds()) == expected


@pytest.mark.parametrize("rate", ["600", "0/minute", "ten/minute", "5/fortnight"])
def test_a_bad_rate_stops_the_start_with_its_name(
    rate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_API_RATE_USER", rate)
    with pytest.raises(SettingsError, match="WEB_API_RATE_USER"):
        conf._rate("WEB_API_RATE_USER", "600/minute")
