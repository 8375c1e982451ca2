"""Who is asking: the client address, the keys requests are counted under, and their limits."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from web.accounts.models import LoginFailureCounter, normalize_email_address

_KEY_SALT = "web.accounts.login-throttle"

Scope = LoginFailureCounter.Scope


@dataclass(frozen=True)
class Limit:
    """One counter a request is counted against: its scope and key, and how many per window."""

    scope: Scope
    key: str
    allowed: int
    window: dt.timedelta


def registration_limits(*, address: str) -> list[Limit]:
    """Returns the limit on registration attempts from one client address."""
    allowed = settings.WEB_REGISTER_MAX_PER_ADDRESS
    window = dt.timedelta(seconds=settings.WEB_REGISTER_WINDOW_SECONDS)
    return [Limit(Scope.REGISTER, address_key(address), allowed, window)]


def password_reset_limits(*, address: str, email: str) -> list[Limit]:
    """Returns the limits on reset requests: per client address, and per e-mail address asked for.

    The e-mail limit holds whether or not an account uses the address, so reaching it
    says nothing about accounts; without an address in the form only the first applies.
    """
    per_address = settings.WEB_PASSWORD_RESET_MAX_PER_ADDRESS
    per_email = settings.WEB_PASSWORD_RESET_MAX_PER_EMAIL
    window = dt.timedelta(seconds=settings.WEB_PASSWORD_RESET_WINDOW_SECONDS)
    limits = [Limit(Scope.RESET, address_key(address), per_address, window)]
    if normalize_email_address(email):
        limits.append(Limit(Scope.RESET_EMAIL, account_key(email), per_email, window))
    return limits


def client_address(request: HttpRequest) -> str:
    """Returns the client's IP address, trusting only the configured proxies' X-Forwarded-For.

    Behind WEB_TRUSTED_PROXY_COUNT proxies, each appends the address it saw: the entry
    that many places from the right is what the outermost trusted proxy saw. Entries
    further left are the client's own claims and are ignored.
    """
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    hops = settings.WEB_TRUSTED_PROXY_COUNT
    if hops == 0:
        return remote
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def address_key(address: str) -> str:
    """Returns the counter key of a client address; IPv6 counts per /64, like one host."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return _hmac(f"other:{address}")
    if parsed.version == 6:
        return _hmac(str(ipaddress.ip_network(f"{parsed}/64", strict=False)))
    return _hmac(str(parsed))


def account_key(email: str) -> str:
    """Returns the counter key of an e-mail address, whether or not it has an account."""
    return _hmac("account:" + normalize_email_address(email))


def _hmac(value: str) -> str:
    return salted_hmac(_KEY_SALT, value, algorithm="sha256").hexdigest()
