"""Reads of the accounts app: whether an address logged in to an account before."""

from __future__ import annotations

import datetime as dt

from django.conf import settings

from web.accounts.models import LoginFailureCounter
from web.accounts.throttle import pair_key


def login_address_known(*, email: str, address: str, now: dt.datetime) -> bool:
    """Whether this address logged in to this account within WEB_LOGIN_KNOWN_ADDRESS_DAYS."""
    since = now - dt.timedelta(days=settings.WEB_LOGIN_KNOWN_ADDRESS_DAYS)
    return LoginFailureCounter.objects.filter(
        scope=LoginFailureCounter.Scope.KNOWN,
        key=pair_key(email, address),
        window_start__gte=since,
    ).exists()
