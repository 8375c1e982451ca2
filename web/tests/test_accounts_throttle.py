"""Registration and password-reset throttling: per client address, and per e-mail for resets."""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any

import pytest
from django.db import close_old_connections, connection
from django.test import Client
from django.utils import timezone
from pytest_django import Settings

from web.accounts import services
from web.accounts.forms import THROTTLED_PASSWORD_RESET_MESSAGE, THROTTLED_REGISTRATION_MESSAGE
from web.accounts.models import LoginFailureCounter, User
from web.tests.conftest import SmtpServer

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

REGISTER = "/accounts/register/"
RESET = "/accounts/password-reset/"
SENT = "/accounts/password-reset/sent/"
PASSWORD = "a-Fresh-passphrase-2024"
Scope = LoginFailureCounter.Scope
# Fewer than the connection pool holds (WEB_DB_POOL_MAX_SIZE 10): each thread keeps one.
THREADS = 8


@pytest.fixture
def limits(settings: Settings) -> Settings:
    """Small limits, so that a test reaches them in a few requests."""
    settings.WEB_REGISTER_MAX_PER_ADDRESS = 3
    settings.WEB_PASSWORD_RESET_MAX_PER_ADDRESS = 4
    settings.WEB_PASSWORD_RESET_MAX_PER_EMAIL = 2
    return settings


def _register(address: str, **overrides: str) -> Response:
    data = {
        "name": "Carol Example",
        "email": "carol@example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
        **overrides,
    }
    return Client().post(REGISTER, data, REMOTE_ADDR=address)


def _reset(email: str, address: str, **extra: Any) -> Response:
    return Client().post(RESET, {"email": email}, REMOTE_ADDR=address, **extra)


def _body(response: Response) -> str:
    return response.content.decode()


def _assert_throttled(response: Response, message: str, window_s: int) -> None:
    assert response.status_code == 429
    assert message in _body(response)
    assert 0 < int(response["Retry-After"]) <= window_s


# --- registration --------------------------------------------------------------------------


def test_registrations_past_the_address_limit_get_429_and_create_nothing(
    limits: Settings,
) -> None:
    # Every attempt counts, a refused form too: "already exists" must not be asked at will.
    for _ in range(3):
        assert _register("198.51.100.1", password2="a-typo").status_code == 200
    response = _register("198.51.100.1")
    _assert_throttled(response, THROTTLED_REGISTRATION_MESSAGE, limits.WEB_REGISTER_WINDOW_SECONDS)
    assert not User.objects.filter(email="carol@example.com").exists()
    # What was typed comes back, the passwords never.
    assert 'value="carol@example.com"' in _body(response)
    assert PASSWORD not in _body(response)
    # Another address is not affected.
    assert _register("198.51.100.2")["Location"] == "/"
    assert User.objects.filter(email="carol@example.com").exists()


def test_an_existing_account_cannot_be_probed_past_the_limit(limits: Settings, alice: User) -> None:
    for number in range(3):
        _register("198.51.100.3", email=f"guess{number}@example.com", password2="x")
    response = _register("198.51.100.3", email=alice.email)
    assert response.status_code == 429
    assert "already exists" not in _body(response)


def test_the_registration_limit_ends_with_its_window(limits: Settings) -> None:
    for _ in range(3):
        _register("198.51.100.4", password2="a-typo")
    assert _register("198.51.100.4").status_code == 429
    LoginFailureCounter.objects.filter(scope=Scope.REGISTER).update(
        window_start=timezone.now() - dt.timedelta(seconds=limits.WEB_REGISTER_WINDOW_SECONDS + 1)
    )
    assert _register("198.51.100.4")["Location"] == "/"


# --- password reset ------------------------------------------------------------------------


def test_one_mailbox_gets_no_more_links_past_its_limit_from_any_address(
    limits: Settings, alice: User, smtp_server: SmtpServer
) -> None:
    for number in range(2):
        assert _reset("Alice@Example.com", f"203.0.113.{number}")["Location"] == SENT
    assert len(smtp_server.messages) == 2
    response = _reset(alice.email, "203.0.113.99")
    _assert_throttled(
        response, THROTTLED_PASSWORD_RESET_MESSAGE, limits.WEB_PASSWORD_RESET_WINDOW_SECONDS
    )
    assert len(smtp_server.messages) == 2
    # Another mailbox still gets its link.
    bob = User.objects.create_user(email="bob@example.com", password=PASSWORD, name="Bob")
    assert _reset(bob.email, "203.0.113.99")["Location"] == SENT
    assert len(smtp_server.messages) == 3


def test_an_unknown_address_is_answered_exactly_like_an_account(
    limits: Settings, alice: User, smtp_server: SmtpServer
) -> None:
    answers = {}
    for email in (alice.email, "nobody@example.com"):
        under = [_reset(email, f"192.0.2.{n}") for n in range(2)]
        assert [r["Location"] for r in under] == [SENT, SENT]
        over = _reset(email, "192.0.2.50")
        assert over.status_code == 429
        answers[email] = _body(over).replace(email, "EMAIL")
    assert len(smtp_server.messages) == 2  # alice's two; nobody's none
    # The refusals differ only in the CSRF token the page carries.
    normalized = [
        " ".join(line for line in body.splitlines() if "csrfmiddlewaretoken" not in line)
        for body in answers.values()
    ]
    assert normalized[0] == normalized[1]


def test_one_address_asking_for_many_mailboxes_is_throttled(
    limits: Settings, smtp_server: SmtpServer
) -> None:
    for number in range(4):
        assert _reset(f"guess{number}@example.com", "198.51.100.9")["Location"] == SENT
    response = _reset("guess9@example.com", "198.51.100.9")
    _assert_throttled(
        response, THROTTLED_PASSWORD_RESET_MESSAGE, limits.WEB_PASSWORD_RESET_WINDOW_SECONDS
    )
    assert _reset("guess9@example.com", "198.51.100.10")["Location"] == SENT


def test_behind_the_trusted_proxy_the_client_address_is_counted(limits: Settings) -> None:
    limits.WEB_TRUSTED_PROXY_COUNT = 1
    for number in range(4):
        _reset(f"g{number}@example.com", "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.60")
    # The ingress's own address is shared: another client still gets through.
    other = _reset("g9@example.com", "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.61")
    assert other["Location"] == SENT
    same = _reset("g9@example.com", "10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.60")
    assert same.status_code == 429


def test_reset_counters_hold_neither_address_in_clear(limits: Settings) -> None:
    _reset("carol@example.com", "198.51.100.33")
    counters = LoginFailureCounter.objects.values_list("scope", "key")
    assert {scope for scope, _ in counters} == {Scope.RESET, Scope.RESET_EMAIL}
    keys = " ".join(key for _, key in counters)
    assert "carol" not in keys
    assert "198.51.100.33" not in keys


def test_log_in_failures_do_not_prune_reset_counters_of_a_longer_window(
    limits: Settings, alice: User
) -> None:
    # 40 minutes: past twice the log-in window (15 min), inside the reset window (1 h).
    start = timezone.now() - dt.timedelta(minutes=40)
    for number in range(2):
        services.password_reset_request_count(
            address=f"192.0.2.{number}", email=alice.email, now=start
        )
    Client().post("/accounts/login/", {"username": alice.email, "password": "wrong"})
    assert _reset(alice.email, "192.0.2.77").status_code == 429


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_cannot_all_slip_under_the_limit(limits: Settings) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks: SQLite's shared in-memory test database refuses concurrent writers")
    # A race is a matter of timing: several bursts, each on a mailbox of its own.
    for burst in range(4):
        waits = _burst(address=f"192.0.2.{200 + burst}", email=f"c{burst}@example.com")
        assert len(waits) == THREADS
        # Each request counts against the address and the mailbox, locked one after the
        # other, so a request may be over one limit while a later one is over the other:
        # fewer than the limit may pass, never more.
        assert waits.count(None) <= limits.WEB_PASSWORD_RESET_MAX_PER_EMAIL, burst
        # No update was lost: both counters of the burst saw every request.
        full = LoginFailureCounter.objects.filter(failures=THREADS).count()
        assert full == 2 * (burst + 1), burst


def _burst(*, address: str, email: str) -> list[int | None]:
    """Counts THREADS reset requests at once, each from its own thread and connection."""
    waits: list[int | None] = []
    start = threading.Barrier(THREADS)

    def ask() -> None:
        try:
            connection.ensure_connection()  # connected first, so that all count at once
            start.wait(timeout=10)
            waits.append(services.password_reset_request_count(address=address, email=email))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return waits


@pytest.mark.django_db(transaction=True)
def test_concurrent_log_in_attempts_cannot_slip_under_the_delay(settings: Settings) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks: SQLite's shared in-memory test database refuses concurrent writers")
    free = settings.WEB_LOGIN_FREE_FAILURES
    for burst in range(4):
        waits = _login_burst(address=f"192.0.2.{210 + burst}", email=f"d{burst}@example.com")
        assert len(waits) == THREADS
        # Counted one after the other under the rows' locks: the free attempts, then the
        # one that starts the first delay; every other attempt saw that delay.
        assert waits.count(None) == free + 1, burst
        assert all(wait == 1 for wait in waits if wait is not None), burst


def _login_burst(*, address: str, email: str) -> list[int | None]:
    """Begins THREADS log-in attempts at once, each from its own thread and connection."""
    waits: list[int | None] = []
    start = threading.Barrier(THREADS)

    def ask() -> None:
        try:
            connection.ensure_connection()
            start.wait(timeout=10)
            waits.append(services.login_attempt_begin(email=email, address=address).wait)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return waits
