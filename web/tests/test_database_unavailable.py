"""A database that cannot be reached is 503 with Retry-After, for the pages and the API."""

from __future__ import annotations

import json

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client, RequestFactory
from rest_framework.test import APIRequestFactory

from web.accounts.models import User
from web.api.exceptions import exception_handler
from web.core.views import DATABASE_RETRY_AFTER_S, server_error

SECRET = "password authentication failed for user medimg; SELECT * FROM patients"


@pytest.mark.parametrize("error", [OperationalError(SECRET), InterfaceError(SECRET)])
def test_the_page_handler_answers_503_for_a_database_away(error: Exception) -> None:
    request = RequestFactory().get("/history/")
    try:
        raise error
    except Exception:  # Django calls the handler inside the except that caught the error
        response = server_error(request)
    assert response.status_code == 503
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_S)
    assert b"Briefly unavailable" in response.content
    assert SECRET.encode() not in response.content


def test_any_other_error_is_still_the_500_page() -> None:
    request = RequestFactory().get("/history/")
    try:
        raise ValueError("a bug")
    except ValueError:
        response = server_error(request)
    assert response.status_code == 500
    assert "Retry-After" not in response


def test_the_api_answers_503_with_its_error_body_and_no_driver_message() -> None:
    request = APIRequestFactory().get("/api/v1/diagnoses/")
    response = exception_handler(OperationalError(SECRET), {"request": request})
    assert response.status_code == 503
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_S)
    body = json.loads(json.dumps(response.data))
    assert body["error"]["code"] == "UNAVAILABLE"
    assert body["error"]["reason"] == "DATABASE_UNAVAILABLE"
    assert SECRET not in json.dumps(body)


def test_a_view_whose_database_fails_is_503_through_the_whole_stack(
    client_alice: Client, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.diagnoses import views

    def failing(*args: object, **kwargs: object) -> None:
        raise OperationalError(SECRET)

    monkeypatch.setattr(views, "render", failing)
    client_alice.raise_request_exception = False
    response = client_alice.get("/diagnose/")
    assert response.status_code == 503
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_S)
