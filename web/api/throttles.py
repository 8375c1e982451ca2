"""DRF throttles of /api/v1/, counted in the database like the log-in throttles (web/README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from web.accounts import services as accounts_services
from web.accounts.models import LoginFailureCounter
from web.accounts.throttle import Limit, address_key, client_address, salted_key
from web.api.conf import parse_rate

if TYPE_CHECKING:
    # Not at run time: rest_framework.views imports this module (DEFAULT_THROTTLE_CLASSES).
    from rest_framework.views import APIView

Scope = LoginFailureCounter.Scope

# URL names (the `api` namespace) whose POST is an upload: a skin image, an MRI series.
UPLOAD_URL_NAMES = frozenset({"diagnoses", "series"})


class CountedRateThrottle(BaseThrottle):
    """A fixed-window rate, counted and checked in one locked update of the shared database.

    DRF's own SimpleRateThrottle keeps a history in Django's cache, read and then
    written: parallel requests can all slip under it, and with the local-memory cache
    (no REDIS_URL) every process would count on its own. The counter table holds across
    processes and pods wherever the site runs, and keys are HMACs (no address stored).
    """

    scope: ClassVar[Scope]
    # The setting (web/api/conf.py) that holds this throttle's rate.
    rate_setting: ClassVar[str]

    def __init__(self) -> None:
        self._wait: int | None = None

    def key(self, request: Request, view: APIView) -> str | None:
        """Returns whom the request is counted against; None: this throttle does not apply."""
        raise NotImplementedError

    def allow_request(self, request: Request, view: APIView) -> bool:
        """Counts the request; False (429) once the key is past its rate in this window."""
        key = self.key(request, view)
        if key is None:
            return True
        allowed, window = parse_rate(getattr(settings, self.rate_setting))
        self._wait = accounts_services.throttle_count(
            limits=[Limit(self.scope, key, allowed, window)]
        )
        return self._wait is None

    def wait(self) -> float | None:
        """Returns the seconds until the window ends (the Retry-After header)."""
        return float(self._wait) if self._wait is not None else None


def _user_key(request: Request) -> str | None:
    user = request.user
    if user is None or not user.is_authenticated:
        return None
    return salted_key(f"user:{user.pk}")


class UserRateThrottle(CountedRateThrottle):
    """Every request of an authenticated caller (token or session), per user."""

    scope = Scope.API_USER
    rate_setting = "WEB_API_RATE_USER"

    def key(self, request: Request, view: APIView) -> str | None:
        """Returns the user's key; None for anonymous requests."""
        return _user_key(request)


class AnonRateThrottle(CountedRateThrottle):
    """Every request without credentials that gets past permissions, per client address."""

    scope = Scope.API_ANON
    rate_setting = "WEB_API_RATE_ANON"

    def key(self, request: Request, view: APIView) -> str | None:
        """Returns the client address's key (IPv6: its /64); None for a logged-in caller."""
        if request.user is not None and request.user.is_authenticated:
            return None
        return address_key(client_address(request._request))


class UploadRateThrottle(CountedRateThrottle):
    """Uploads (POST diagnoses/, POST series/), per user, on top of the user's rate."""

    scope = Scope.API_UPLOAD
    rate_setting = "WEB_API_RATE_UPLOAD"

    def key(self, request: Request, view: APIView) -> str | None:
        """Returns the user's key for a POST to an upload URL; None for anything else."""
        match = request._request.resolver_match
        if request.method != "POST" or match is None or match.url_name not in UPLOAD_URL_NAMES:
            return None
        return _user_key(request)


class TokenRateThrottle(CountedRateThrottle):
    """Token requests (POST auth/token/), right or wrong, per client address."""

    scope = Scope.API_TOKEN
    rate_setting = "WEB_API_RATE_TOKEN"

    def key(self, request: Request, view: APIView) -> str | None:
        """Returns the client address's key."""
        return address_key(client_address(request._request))


# Every operation of /api/v1/ (web.api.base.ApiView; the token view names its own).
DEFAULT_THROTTLES: tuple[type[BaseThrottle], ...] = (
    UserRateThrottle,
    AnonRateThrottle,
    UploadRateThrottle,
)
