"""Test setup of the web tier: Django configured for tests, named users, SMTP and PostgreSQL.

Django is configured here, not in the pytest ini, so that the rest of the repository's
tests never load it. The database is SQLite in memory unless WEB_TEST_DATABASE=postgres,
which starts a real PostgreSQL 15 for the session (web/tests/postgres.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import django
import pytest
from pytest_django import DjangoDbBlocker, Settings

from web.tests.postgres import PostgresServer, free_port

DATABASE_CHOICE_ENV = "WEB_TEST_DATABASE"
ALICE_PASSWORD = "alice-correct-horse-42"
BOB_PASSWORD = "bob-battery-staple-17"

# Settings the developer's shell may hold that must not leak into the tests.
_SETTINGS_TO_CLEAR = (
    "DATABASE_URL",
    "REDIS_URL",
    "GATEWAY_ADDR",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "CORS_ALLOWED_ORIGINS",
    "WEB_IMAGE_URL_ALLOW_NETWORKS",
    "WEB_SERIES_WORKER",
    "WEB_SERIES_TASK_TIME_LIMIT_SECONDS",
    "WEB_IMAGE_URL_TIMEOUT_SECONDS",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_HOST_PASSWORD_FILE",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
    "DEFAULT_FROM_EMAIL",
    "SECURE_PROXY_SSL_HEADER",
    "WEB_HTTPS",
    "WEB_STATIC_ROOT",
    "WEB_TRUSTED_PROXY_COUNT",
    "WEB_LOG_FORMAT",
)


def _database_choice() -> str:
    choice = os.environ.get(DATABASE_CHOICE_ENV, "sqlite").strip().lower() or "sqlite"
    if choice not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"{DATABASE_CHOICE_ENV} must be sqlite or postgres, got {choice!r}")
    return choice


def _configure_django() -> None:
    """Loads the settings from a test environment, then gives the caller's environment back."""
    scratch = Path(tempfile.mkdtemp(prefix="medimg-web-tests-"))
    (scratch / "static").mkdir()
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    test_env = {
        "DJANGO_SETTINGS_MODULE": "web.config.settings",
        "WEB_DEBUG": "true",
        "WEB_MEDIA_ROOT": str(scratch / "media"),
        "WEB_STATIC_ROOT": str(scratch / "static"),
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "WEB_LOG_LEVEL": "WARNING",
    }
    if _database_choice() == "postgres":
        server = PostgresServer.start()
        atexit.register(server.stop)
        test_env["DATABASE_URL"] = server.url
    saved = dict(os.environ)
    try:
        for name in _SETTINGS_TO_CLEAR:
            os.environ.pop(name, None)
        os.environ.update(test_env)
        django.setup()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        # A file, not Django's shared-cache in-memory default: there a Celery or ASGI
        # worker thread writing beside the test fails at once with "database table is
        # locked" (shared-cache locks ignore the busy timeout); a file waits, as in use.
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(scratch / "test.sqlite3")
    # Hashing at full strength costs a quarter second a password; tests need none of it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


_configure_django()

from django.test import Client  # noqa: E402  (needs the settings above)

from web.accounts.models import User  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Registers the marker of the tests that `make test` also runs on PostgreSQL."""
    config.addinivalue_line(
        "markers", "postgres: also run against a real PostgreSQL by `make test`"
    )


def pytest_report_header(config: pytest.Config) -> str:
    """Says which database the web tests use."""
    from django.conf import settings

    return f"web tests database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"


@pytest.fixture(autouse=True, scope="session")
def _database_only_where_asked(django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """Blocks the database outside tests marked `django_db` (or using `db`), as pytest-django does.

    pytest-django blocks it itself only when Django is configured before it starts;
    here Django is configured when this conftest loads, which may be later.
    """
    with django_db_blocker.block():
        yield


@pytest.fixture
def alice(db: None) -> User:
    """Returns Alice, who owns the records in most tests."""
    return User.objects.create_user(
        email="alice@example.com", password=ALICE_PASSWORD, name="Alice Example"
    )


@pytest.fixture
def bob(db: None) -> User:
    """Returns Bob, another user, who must never see Alice's records."""
    return User.objects.create_user(
        email="bob@example.com", password=BOB_PASSWORD, name="Bob Example"
    )


@pytest.fixture
def client_alice(alice: User) -> Client:
    """Returns a test client logged in as Alice."""
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def client_bob(bob: User) -> Client:
    """Returns a test client logged in as Bob."""
    client = Client()
    client.force_login(bob)
    return client


@dataclass
class SmtpServer:
    """A real SMTP server on loopback (aiosmtpd) and the messages it received."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)


@pytest.fixture
def smtp_server(settings: Settings) -> Iterator[SmtpServer]:
    """Starts an SMTP server on a free loopback port and points Django's SMTP backend at it."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

    received: list[EmailMessage] = []

    class Collect:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            content = envelope.original_content or b""
            received.append(BytesParser(EmailMessage, policy=default_policy).parsebytes(content))
            return "250 OK"

    # aiosmtpd connects to its own port to check it started, so it cannot take port 0.
    port = free_port()
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        yield SmtpServer(host="127.0.0.1", port=port, messages=received)
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def series_gateway_address() -> Iterator[str]:
    """Runs the real MRI servicer (model doubles) behind the real gateway for the session."""
    from web.tests.series_stack import series_stack

    with series_stack() as address:
        yield address


@pytest.fixture
def series_gateway(series_gateway_address: str, settings: Settings) -> str:
    """Points the web tier at the in-process gateway and MRI service; returns the address."""
    settings.GATEWAY_ADDR = series_gateway_address
    return series_gateway_address
