"""Who is trying to log in: the client address and the keys log-in failures are counted under."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from web.accounts.models import normalize_email_address

_KEY_SALT = "web.accounts.login-throttle"


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
