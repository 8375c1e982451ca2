"""Who is asking: the client address, the counter keys, and the limits and delays on them."""

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
class Delay:
    """One counter a log-in attempt is counted against, and the delay its count imposes.

    The first `free` attempts within the window wait for nothing; each one after them
    makes the next wait WEB_LOGIN_DELAY_BASE_SECONDS, doubled per attempt, at most `cap_s`.
    `enforced` False: counted (the owner's notice needs the number) but not delaying
    this client, whose address logged in to the account before.
    """

    scope: Scope
    key: str
    free: int
    cap_s: int
    enforced: bool = True

    def seconds(self, attempts: int) -> int:
        """Returns the delay that `attempts` attempts within the window impose on the next."""
        if attempts <= self.free:
            return 0
        doublings = min(attempts - self.free - 1, 30)  # 2**30 s is beyond any cap
        return int(min(self.cap_s, settings.WEB_LOGIN_DELAY_BASE_SECONDS * 2**doublings))


def login_delays(*, email: str, address: str, known: bool) -> list[Delay]:
    """Returns the three counters of a log-in attempt, in a fixed order (the lock order).

    Per (account, address): the attacker's own guesses, delayed soon and up to the cap.
    Per address across accounts: one address trying many accounts. Per account across
    addresses: many addresses trying one account, a short delay only, never applied to
    an address that logged in to the account before (`known`), so its owner gets in.
    """
    cap = settings.WEB_LOGIN_MAX_DELAY_SECONDS
    return [
        Delay(
            Scope.ACCOUNT,
            account_key(email),
            settings.WEB_LOGIN_MAX_FAILURES_PER_ACCOUNT,
            settings.WEB_LOGIN_ACCOUNT_MAX_DELAY_SECONDS,
            enforced=not known,
        ),
        Delay(
            Scope.ADDRESS, address_key(address), settings.WEB_LOGIN_MAX_FAILURES_PER_ADDRESS, cap
        ),
        Delay(Scope.PAIR, pair_key(email, address), settings.WEB_LOGIN_FREE_FAILURES, cap),
    ]


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


def pair_key(email: str, address: str) -> str:
    """Returns the counter key of one e-mail address tried from one client address (or /64)."""
    return _hmac(f"pair:{account_key(email)}:{address_key(address)}")


def salted_key(value: str) -> str:
    """Returns the counter key of any other identity (an API user): an HMAC, like the rest."""
    return _hmac(value)


def _hmac(value: str) -> str:
    return salted_hmac(_KEY_SALT, value, algorithm="sha256").hexdigest()
