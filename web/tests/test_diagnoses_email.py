"""E-mail of results through Django's SMTP backend to a real SMTP server on loopback."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from web.accounts.models import User
from web.diagnoses import services
from web.diagnoses.models import Diagnosis
from web.tests.conftest import SmtpServer
from web.tests.test_diagnoses_services import a_result, closed_port, jpeg, upload


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def opted_in(user: User) -> User:
    user.email_results = True
    user.save()
    return user


def pending(user: User) -> Diagnosis:
    return services.diagnosis_create(user=user, upload=upload(jpeg()))


def parts(message: Any) -> tuple[str, str]:
    assert isinstance(message, EmailMessage)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


@pytest.mark.postgres
def test_an_opted_in_user_gets_the_result_in_text_and_html_after_the_commit(
    alice: User,
    media: Path,
    smtp_server: SmtpServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    diagnosis = pending(opted_in(alice))
    with django_capture_on_commit_callbacks(execute=True) as queued:
        services.diagnosis_record_result(
            diagnosis=diagnosis, result=a_result("melanoma"), base_url="https://medimg.test"
        )
        assert smtp_server.messages == []  # nothing leaves before the commit
    assert len(queued) == 1
    [message] = smtp_server.messages
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Your medimg result is ready"
    assert "melanoma" not in message["Subject"].lower()  # the result stays in the body
    text, html = parts(message)
    link = f"https://medimg.test/diagnose/{diagnosis.pk}/"
    for body in (text, html):
        assert "Alice Example" in body and "Melanoma" in body
        assert "82.0%" in body and "13.0%" in body and "5.0%" in body
        assert "skin-demo 2026.11.1" in body
        assert "not for clinical use" in body.lower()
        assert link in body
    assert not [part for part in message.iter_attachments()]  # the image is never attached


def test_a_user_who_did_not_opt_in_gets_no_email(
    alice: User, media: Path, smtp_server: SmtpServer, django_capture_on_commit_callbacks: Any
) -> None:
    diagnosis = pending(alice)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        services.diagnosis_record_result(diagnosis=diagnosis, result=a_result())
    assert queued == [] and smtp_server.messages == []


def test_a_result_that_is_rolled_back_sends_no_email(
    alice: User, media: Path, smtp_server: SmtpServer, django_capture_on_commit_callbacks: Any
) -> None:
    diagnosis = pending(opted_in(alice))
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.diagnosis_record_result(diagnosis=diagnosis, result=a_result())
        raise RuntimeError("something later in the same transaction failed")
    assert smtp_server.messages == []


def test_a_failed_diagnosis_sends_no_email(
    alice: User,
    media: Path,
    smtp_server: SmtpServer,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{closed_port()}"
    diagnosis = pending(opted_in(alice))
    with django_capture_on_commit_callbacks(execute=True):
        services.diagnosis_run(diagnosis=diagnosis)
    assert smtp_server.messages == []


def test_an_smtp_server_that_is_down_does_not_undo_the_result(
    alice: User, media: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", closed_port(), 2
    diagnosis = pending(opted_in(alice))
    with django_capture_on_commit_callbacks(execute=True):
        services.diagnosis_record_result(diagnosis=diagnosis, result=a_result())
    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.DONE
