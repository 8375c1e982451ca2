"""Accounts: registration, log-in and its delays, log-out, password reset, log-in required."""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from pytest_django import Settings

from web.accounts.forms import INVALID_LOGIN_MESSAGE, THROTTLED_LOGIN_MESSAGE
from web.accounts.models import LoginFailureCounter, User
from web.tests.conftest import ALICE_PASSWORD, SmtpServer

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

LOGIN = "/accounts/login/"
GOOD_NEW_PASSWORD = "a-Fresh-passphrase-2024"


def _register(client: Client, **overrides: str) -> Response:
    data = {
        "name": "Carol Example",
        "email": "Carol@Example.com",
        "password1": GOOD_NEW_PASSWORD,
        "password2": GOOD_NEW_PASSWORD,
        **overrides,
    }
    return client.post("/accounts/register/", data)


def _log_in(client: Client, email: str, password: str, **extra: Any) -> Response:
    return client.post(LOGIN, {"username": email, "password": password}, **extra)


def _body(response: Response) -> str:
    return response.content.decode()


# --- registration ------------------------------------------------------------------------------


def test_registering_creates_the_account_and_logs_its_owner_in() -> None:
    client = Client()
    response = _register(client)
    assert response.status_code == 302
    user = User.objects.get()
    assert (user.email, user.name) == ("carol@example.com", "Carol Example")
    assert user.check_password(GOOD_NEW_PASSWORD)
    assert "Welcome, Carol Example" in _body(client.get("/"))


def test_it_refuses_a_second_account_for_the_same_address_whatever_its_case(alice: User) -> None:
    response = _register(Client(), email="ALICE@example.COM")
    assert response.status_code == 200
    assert "already exists" in _body(response)
    assert User.objects.count() == 1


def test_it_refuses_a_weak_or_mistyped_password() -> None:
    weak = _register(Client(), password1="password", password2="password")
    assert "too common" in _body(weak)
    mistyped = _register(Client(), password2=GOOD_NEW_PASSWORD + "x")
    assert "match" in _body(mistyped)
    assert not User.objects.exists()


def test_the_registration_page_is_public_and_labels_every_field() -> None:
    body = _body(Client().get("/accounts/register/"))
    for label in ("Your name", "E-mail address", "Password", "Password confirmation"):
        assert f">{label}</label>" in body


# --- log-in ------------------------------------------------------------------------------------


def test_alice_logs_in_with_her_address_in_any_case(alice: User) -> None:
    client = Client()
    response = _log_in(client, "  Alice@EXAMPLE.com ", ALICE_PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_log_in_returns_to_the_page_that_asked_for_it(alice: User) -> None:
    client = Client()
    response = client.post(
        LOGIN + "?next=/accounts/profile/",
        {"username": alice.email, "password": ALICE_PASSWORD, "next": "/accounts/profile/"},
    )
    assert response["Location"] == "/accounts/profile/"


def test_log_in_never_redirects_to_another_site(alice: User) -> None:
    response = Client().post(
        LOGIN, {"username": alice.email, "password": ALICE_PASSWORD, "next": "https://evil.test/"}
    )
    assert response["Location"] == "/"


def test_a_wrong_password_and_an_unknown_address_get_the_same_message(alice: User) -> None:
    wrong = _log_in(Client(), alice.email, "not-her-password")
    unknown = _log_in(Client(), "nobody@example.com", "whatever-password")
    malformed = _log_in(Client(), "not an address", "whatever-password")
    for response in (wrong, unknown, malformed):
        assert response.status_code == 200
        assert INVALID_LOGIN_MESSAGE in _body(response)
        assert "Enter a valid email" not in _body(response)


def test_an_inactive_account_cannot_log_in_and_is_not_revealed(alice: User) -> None:
    User.objects.filter(pk=alice.pk).update(is_active=False)
    response = _log_in(Client(), alice.email, ALICE_PASSWORD)
    assert INVALID_LOGIN_MESSAGE in _body(response)


# --- log-in delays (never a lock) ---------------------------------------------------------------

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


def _time_passes() -> None:
    """Ends every delay, as if the attacker had waited what Retry-After said."""
    LoginFailureCounter.objects.exclude(blocked_until=None).update(
        blocked_until=timezone.now() - dt.timedelta(seconds=1)
    )


def _retry_after(response: Response) -> int:
    assert response.status_code == 429
    assert THROTTLED_LOGIN_MESSAGE in _body(response)
    return int(response["Retry-After"])


def test_failures_from_one_address_wait_longer_and_longer_up_to_the_cap(
    alice: User, settings: Settings
) -> None:
    settings.WEB_LOGIN_MAX_DELAY_SECONDS = 8
    for _ in range(3):  # WEB_LOGIN_FREE_FAILURES: no delay yet
        assert _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=ATTACKER).status_code == 200
    waits = []
    for _ in range(6):
        assert _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=ATTACKER).status_code == 200
        waits.append(_retry_after(_log_in(Client(), alice.email, "wrong", REMOTE_ADDR=ATTACKER)))
        _time_passes()
    assert waits == [1, 2, 4, 8, 8, 8]
    # A delay, not a lock: once it ends even the attacker's address may try the password.
    assert _log_in(Client(), alice.email, ALICE_PASSWORD, REMOTE_ADDR=ATTACKER).status_code == 302


def test_the_owner_logs_in_from_their_address_while_an_attacker_is_slowed(alice: User) -> None:
    attempts = 0
    for _ in range(12):  # about what one address gets through in a 15-minute window
        _time_passes()
        if _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=ATTACKER).status_code == 200:
            attempts += 1
    assert attempts == 12
    assert _retry_after(_log_in(Client(), alice.email, ALICE_PASSWORD, REMOTE_ADDR=ATTACKER)) > 0
    # Delayed attempts are refused before the password is checked, so the attacker learns
    # nothing; the owner, elsewhere, logs in at once with the right password.
    owner = Client()
    assert _log_in(owner, alice.email, ALICE_PASSWORD, REMOTE_ADDR=OWNER).status_code == 302
    assert owner.get("/accounts/profile/").status_code == 200


def test_many_addresses_on_one_account_delay_only_briefly_and_never_a_known_address(
    alice: User,
) -> None:
    # The owner logged in from her address before.
    assert _log_in(Client(), alice.email, ALICE_PASSWORD, REMOTE_ADDR=OWNER).status_code == 302
    for number in range(25):  # past WEB_LOGIN_MAX_FAILURES_PER_ACCOUNT (20), one try each
        _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=f"192.0.2.{number + 1}")
    # A new address waits, at most WEB_LOGIN_ACCOUNT_MAX_DELAY_SECONDS: slowed, not locked.
    assert 0 < _retry_after(_log_in(Client(), alice.email, ALICE_PASSWORD)) <= 30
    # Her own address is exempt from the account's delay.
    assert _log_in(Client(), alice.email, ALICE_PASSWORD, REMOTE_ADDR=OWNER).status_code == 302


def test_an_unknown_address_is_answered_exactly_like_a_real_account(alice: User) -> None:
    answers = {}
    for email in (alice.email, "nobody@example.com"):
        seen = []
        for _ in range(6):
            response = _log_in(Client(), email, "wrong", REMOTE_ADDR=ATTACKER)
            seen.append((response.status_code, response.get("Retry-After")))
        answers[email] = seen
    assert answers[alice.email] == answers["nobody@example.com"]
    assert answers[alice.email][-1] == (429, "1")


def test_one_address_trying_many_accounts_is_slowed(alice: User, bob: User) -> None:
    for number in range(21):  # WEB_LOGIN_MAX_FAILURES_PER_ADDRESS (20) free, then delays
        _log_in(Client(), f"guess{number}@example.com", "wrong", REMOTE_ADDR="198.51.100.20")
    response = _log_in(Client(), bob.email, "bob-battery-staple-17", REMOTE_ADDR="198.51.100.20")
    assert _retry_after(response) == 1
    # Alice, elsewhere, is not affected.
    assert _log_in(Client(), alice.email, ALICE_PASSWORD).status_code == 302


def test_attempts_are_forgotten_when_the_window_ends(alice: User) -> None:
    for _ in range(4):
        _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=ATTACKER)
    assert _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=ATTACKER).status_code == 429
    LoginFailureCounter.objects.update(
        window_start=timezone.now() - dt.timedelta(seconds=901), blocked_until=None
    )
    for _ in range(3):  # free again
        assert _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=ATTACKER).status_code == 200


def test_a_successful_log_in_forgets_the_accounts_earlier_failures(alice: User) -> None:
    for _ in range(3):
        _log_in(Client(), alice.email, "wrong")
    assert _log_in(Client(), alice.email, ALICE_PASSWORD).status_code == 302
    for _ in range(3):
        assert _log_in(Client(), alice.email, "wrong").status_code == 200
    assert _log_in(Client(), alice.email, ALICE_PASSWORD).status_code == 302


def test_the_counters_hold_no_address_in_clear(alice: User) -> None:
    _log_in(Client(), alice.email, "wrong", REMOTE_ADDR="198.51.100.33")
    keys = " ".join(LoginFailureCounter.objects.values_list("key", flat=True))
    assert "alice" not in keys
    assert "198.51.100.33" not in keys
    assert LoginFailureCounter.objects.count() == 3  # account, address, the two together


def test_the_owner_is_told_of_repeated_failures_once_per_window(
    alice: User, mailoutbox: list[Any]
) -> None:
    for number in range(8):  # WEB_LOGIN_NOTIFY_AFTER_FAILURES is 5, from any address
        _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=f"192.0.2.{number + 1}")
        _log_in(Client(), "nobody@example.com", "wrong", REMOTE_ADDR=f"192.0.2.{number + 1}")
    _notices_sent()
    assert [message.to for message in mailoutbox] == [[alice.email]]
    notice = mailoutbox[0]
    assert "5 times" in notice.body
    assert "not locked" in notice.body
    # A new window, a new notice.
    LoginFailureCounter.objects.update(window_start=timezone.now() - dt.timedelta(seconds=901))
    for number in range(5):
        _log_in(Client(), alice.email, "wrong", REMOTE_ADDR=f"192.0.2.{number + 1}")
    _notices_sent()
    assert len(mailoutbox) == 2


def _notices_sent() -> None:
    """Waits for the notices' threads (they send after the answer, so timing says nothing)."""
    for thread in threading.enumerate():
        if thread.name == "login-failure-notice":
            thread.join(timeout=10)


def test_a_forged_forwarded_for_header_does_not_escape_the_address_limit(alice: User) -> None:
    for number in range(21):
        _log_in(
            Client(),
            f"guess{number}@example.com",
            "wrong",
            REMOTE_ADDR="198.51.100.40",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{number}",
        )
    response = _log_in(Client(), alice.email, ALICE_PASSWORD, REMOTE_ADDR="198.51.100.40")
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_address_it_saw_is_counted(
    alice: User, settings: Settings
) -> None:
    settings.WEB_TRUSTED_PROXY_COUNT = 1
    for number in range(21):
        _log_in(
            Client(),
            f"guess{number}@example.com",
            "wrong",
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.50",
        )
    # The ingress's own address is shared by everybody: another client still gets in.
    other = _log_in(
        Client(),
        alice.email,
        ALICE_PASSWORD,
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.51",
    )
    assert other.status_code == 302
    same = _log_in(
        Client(),
        alice.email,
        ALICE_PASSWORD,
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.50",
    )
    assert same.status_code == 429


# --- log-out -----------------------------------------------------------------------------------


def test_logging_out_ends_the_session(client_alice: Client) -> None:
    response = client_alice.post("/accounts/logout/")
    assert response.status_code == 302
    assert client_alice.get("/accounts/profile/").status_code == 302


def test_the_log_out_link_asks_before_logging_out(client_alice: Client) -> None:
    response = client_alice.get("/accounts/logout/")
    assert response.status_code == 200
    assert 'action="/accounts/logout/"' in _body(response)
    assert client_alice.get("/accounts/profile/").status_code == 200


# --- profile and passwords ---------------------------------------------------------------------


def test_alice_changes_her_name_and_opts_in_to_results_by_email(
    client_alice: Client, alice: User
) -> None:
    response = client_alice.post(
        "/accounts/profile/", {"name": "Alice Liddell", "email_results": "on"}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.name, alice.email_results) == ("Alice Liddell", True)


def test_alice_changes_her_password(client_alice: Client, alice: User) -> None:
    response = client_alice.post(
        "/accounts/password/",
        {
            "old_password": ALICE_PASSWORD,
            "new_password1": GOOD_NEW_PASSWORD,
            "new_password2": GOOD_NEW_PASSWORD,
        },
    )
    assert response["Location"] == "/accounts/password/done/"
    alice.refresh_from_db()
    assert alice.check_password(GOOD_NEW_PASSWORD)


def test_a_forgotten_password_is_reset_through_a_link_sent_by_smtp(
    alice: User, smtp_server: SmtpServer
) -> None:
    client = Client()
    response = client.post("/accounts/password-reset/", {"email": "Alice@Example.com"})
    assert response["Location"] == "/accounts/password-reset/sent/"
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["To"] == alice.email
    assert "Reset your medimg password" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "Choose a new password" in html
    link = re.search(r"http://testserver(/accounts/password-reset/\S+/)", text)
    assert link is not None
    form_page = client.get(link.group(1), follow=True)
    assert "Choose a new password" in _body(form_page)
    done = client.post(
        form_page.request["PATH_INFO"],
        {"new_password1": GOOD_NEW_PASSWORD, "new_password2": GOOD_NEW_PASSWORD},
    )
    assert done["Location"] == "/accounts/password-reset/done/"
    assert _log_in(Client(), alice.email, GOOD_NEW_PASSWORD).status_code == 302
    # The link works once.
    assert "no longer works" in _body(client.get(link.group(1), follow=True))


def test_a_reset_for_an_unknown_address_looks_the_same_and_sends_nothing(
    smtp_server: SmtpServer,
) -> None:
    response = Client().post("/accounts/password-reset/", {"email": "nobody@example.com"})
    assert response["Location"] == "/accounts/password-reset/sent/"
    assert smtp_server.messages == []


# --- log-in required everywhere but the public pages -------------------------------------------

PUBLIC_PATHS = {
    "/",
    "/healthz",
    "/accounts/register/",
    "/accounts/login/",
    "/accounts/password-reset/",
    "/accounts/password-reset/sent/",
    "/accounts/password-reset/done/",
    "/accounts/password-reset/<uidb64>/<token>/",
}
_SAMPLES = {
    "int": "1",
    "str": "sample",
    "slug": "sample",
    "uuid": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
    "path": "a/b",
}


def _every_page(
    resolvers: list[URLPattern | URLResolver], prefix: str = ""
) -> list[tuple[str, str]]:
    pages = []
    for entry in resolvers:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            pages += _every_page(entry.url_patterns, route)
            continue
        concrete = re.sub(
            r"<(?:(\w+):)?\w+>", lambda m: _SAMPLES.get(m.group(1) or "str", "1"), route
        )
        if "(" not in concrete and "^" not in concrete:
            pages.append((route, "/" + concrete))
    return pages


def test_every_page_but_the_public_ones_sends_visitors_to_log_in() -> None:
    checked = 0
    for route, page in _every_page(get_resolver().url_patterns):
        if page.startswith(("/admin/", "/api/", "/static/")) or "/" + route in PUBLIC_PATHS:
            continue
        response = Client().get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith(f"{LOGIN}?next="), page
        checked += 1
    assert checked >= 3  # profile, passwords, log-out at least


def test_the_rest_api_is_left_to_answer_for_itself() -> None:
    # No redirect to the log-in page: the API authenticates tokens and says 401 in JSON.
    assert Client().get("/api/v1/no-such-endpoint/").status_code == 404


def test_staff_log_in_to_the_admin_through_the_throttled_page(alice: User) -> None:
    assert Client().get("/admin/")["Location"] == "/admin/login/?next=/admin/"
    redirect = Client().get("/admin/login/?next=/admin/accounts/user/")
    assert redirect["Location"] == f"{LOGIN}?next=%2Fadmin%2Faccounts%2Fuser%2F"
    posted = Client().post("/admin/login/", {"username": alice.email, "password": "guess"})
    assert posted.status_code == 302
    assert not LoginFailureCounter.objects.exists()
    admin = User.objects.create_superuser(email="root@example.com", password="x", name="Root")
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/accounts/user/")
    assert listing.status_code == 200
    assert alice.email in _body(listing)


# --- the user model ----------------------------------------------------------------------------


def test_addresses_are_stored_and_matched_in_lower_case() -> None:
    user = User.objects.create_user(email=" Dave@Example.COM ", password="p", name="Dave")
    assert user.email == "dave@example.com"
    assert User.objects.get_by_natural_key("DAVE@example.com") == user
    assert str(user) == "dave@example.com"
    assert user.get_full_name() == user.get_short_name() == "Dave"


def test_a_superuser_must_be_staff() -> None:
    with pytest.raises(ValueError, match="superuser"):
        User.objects.create_superuser(email="x@example.com", password="p", name="X", is_staff=False)
