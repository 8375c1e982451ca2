"""Reads of the accounts app: whether a log-in attempt must wait."""

from __future__ import annotations

import datetime as dt
import math

from django.conf import settings
from django.utils import timezone

from web.accounts.models import LoginFailureCounter
from web.accounts.throttle import account_key, address_key


def login_retry_after(*, email: str, address: str, now: dt.datetime | None = None) -> int | None:
    """Returns the seconds to wait before another log-in attempt may be checked, or None.

    An attempt waits when its e-mail address or its client address has reached its
    limit of failures within the current window.
    """
    now = now or timezone.now()
    window = dt.timedelta(seconds=settings.WEB_LOGIN_WINDOW_SECONDS)
    limits = {
        (LoginFailureCounter.Scope.ACCOUNT, account_key(email)): (
            settings.WEB_LOGIN_MAX_FAILURES_PER_ACCOUNT
        ),
        (LoginFailureCounter.Scope.ADDRESS, address_key(address)): (
            settings.WEB_LOGIN_MAX_FAILURES_PER_ADDRESS
        ),
    }
    waits = []
    for counter in LoginFailureCounter.objects.filter(
        key__in=[key for _, key in limits], window_start__gt=now - window
    ):
        limit = limits.get((LoginFailureCounter.Scope(counter.scope), counter.key))
        if limit is not None and counter.failures >= limit:
            waits.append((counter.window_start + window - now).total_seconds())
    return max(1, math.ceil(max(waits))) if waits else None
