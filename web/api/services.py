"""Writes of the API: diagnoses from an image URL, and tokens issued after a throttled log-in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import authenticate
from django.http import HttpRequest
from rest_framework.authtoken.models import Token

from web.accounts import services as accounts_services
from web.accounts.forms import INVALID_LOGIN_MESSAGE, THROTTLED_LOGIN_MESSAGE
from web.accounts.models import User
from web.accounts.throttle import client_address
from web.api import fetch
from web.diagnoses import services as diagnoses_services
from web.diagnoses.models import Diagnosis

if TYPE_CHECKING:
    from web.gateway_client import GatewayClient


class LoginThrottled(Exception):
    """A failure delay applies to the account or the address; `retry_after_s` says how long."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(THROTTLED_LOGIN_MESSAGE)
        self.message = THROTTLED_LOGIN_MESSAGE
        self.retry_after_s = retry_after_s


class LoginFailed(Exception):
    """The e-mail address and password do not match an active account (one message for all)."""

    def __init__(self) -> None:
        super().__init__(INVALID_LOGIN_MESSAGE)
        self.message = INVALID_LOGIN_MESSAGE


def diagnosis_submit_from_url(
    *,
    user: User,
    image_url: str,
    disease: str = "skin",
    base_url: str = "",
    gateway: GatewayClient | None = None,
) -> Diagnosis:
    """Fetches the image behind `image_url` (web.api.fetch's rules), then stores and diagnoses it.

    Raises ImageUrlRefused or InvalidImage before anything is stored.
    """
    data = fetch.fetch_image(image_url, limits=fetch.limits_from_settings())
    return diagnoses_services.diagnosis_submit(
        user=user, upload=data, disease=disease, gateway=gateway, base_url=base_url
    )


def auth_token_issue(*, request: HttpRequest, email: str, password: str) -> Token:
    """Returns the user's API token once the e-mail address and password match.

    The same delays as the log-in page, counted in the same counters: while one applies,
    LoginThrottled is raised and the password is not checked at all. A wrong password
    (or an unknown address) raises LoginFailed.
    """
    attempt = accounts_services.login_attempt_begin(
        email=email[:254], address=client_address(request)
    )
    if attempt.wait is not None:
        raise LoginThrottled(attempt.wait)
    user = authenticate(request, username=attempt.email, password=password)
    if not isinstance(user, User):
        accounts_services.login_failure_record(attempt=attempt)
        raise LoginFailed
    accounts_services.login_success_record(attempt=attempt)
    token, _created = Token.objects.get_or_create(user=user)
    return token
