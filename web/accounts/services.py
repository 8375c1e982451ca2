"""Writes of the accounts app: registration, profile changes, throttle counters."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from web.accounts.models import LoginFailureCounter, User
from web.accounts.throttle import (
    Limit,
    account_key,
    address_key,
    password_reset_limits,
    registration_limits,
)

_LOGIN_SCOPES = (LoginFailureCounter.Scope.ACCOUNT, LoginFailureCounter.Scope.ADDRESS)


def user_create(*, email: str, name: str, password: str | None) -> User:
    """Creates an ordinary account; without a password it cannot log in until reset."""
    return User.objects.create_user(email=email, password=password, name=name)


def user_update_profile(*, user: User, name: str, email_results: bool) -> User:
    """Changes the user's name and whether results are e-mailed to them."""
    user.name = name
    user.email_results = email_results
    user.full_clean(exclude=["password"])
    user.save(update_fields=["name", "email_results"])
    return user


def login_failure_record(*, email: str, address: str, now: dt.datetime | None = None) -> None:
    """Counts one failed log-in against the e-mail address and the client address."""
    now = now or timezone.now()
    window = dt.timedelta(seconds=settings.WEB_LOGIN_WINDOW_SECONDS)
    _bump(LoginFailureCounter.Scope.ACCOUNT, account_key(email), now=now, window=window)
    _bump(LoginFailureCounter.Scope.ADDRESS, address_key(address), now=now, window=window)
    _prune(_LOGIN_SCOPES, now=now, window=window)


def login_success_record(*, email: str) -> None:
    """Forgets the account's failures once its owner has logged in."""
    LoginFailureCounter.objects.filter(
        scope=LoginFailureCounter.Scope.ACCOUNT, key=account_key(email)
    ).delete()


def registration_attempt_count(*, address: str, now: dt.datetime | None = None) -> int | None:
    """Counts one registration attempt from a client address; returns seconds to wait, or None."""
    return throttle_count(limits=registration_limits(address=address), now=now)


def password_reset_request_count(
    *, address: str, email: str, now: dt.datetime | None = None
) -> int | None:
    """Counts one reset request per client address and per e-mail; returns seconds to wait, or None.

    Counted the same whether or not an account uses the e-mail address.
    """
    return throttle_count(limits=password_reset_limits(address=address, email=email), now=now)


def throttle_count(*, limits: Sequence[Limit], now: dt.datetime | None = None) -> int | None:
    """Counts one request against every limit; returns the seconds to wait if one is exceeded.

    A request is counted, and told whether it is over a limit, in one locked update, so
    concurrent requests cannot all slip under it; a refused request counts too, which
    changes nothing (a window ends at a fixed time). None: the request may go on.
    """
    now = now or timezone.now()
    waits = []
    for limit in limits:
        count, window_start = _bump(limit.scope, limit.key, now=now, window=limit.window)
        if count > limit.allowed:
            waits.append((window_start + limit.window - now).total_seconds())
        _prune((limit.scope,), now=now, window=limit.window)
    return max(1, math.ceil(max(waits))) if waits else None


def _prune(scopes: Sequence[str], *, now: dt.datetime, window: dt.timedelta) -> None:
    """Deletes counters of these scopes whose window ended long ago: they say nothing."""
    LoginFailureCounter.objects.filter(scope__in=scopes, window_start__lt=now - 2 * window).delete()


def _bump(
    scope: str, key: str, *, now: dt.datetime, window: dt.timedelta
) -> tuple[int, dt.datetime]:
    """Adds one to a counter, starting a new window when the last one ended.

    Returns the count and the start of its window after this one, read under the row's
    lock (SQLite: the IMMEDIATE transaction's write lock), so no two callers see the same.
    """
    for _attempt in range(2):
        try:
            with transaction.atomic():
                counter, created = LoginFailureCounter.objects.select_for_update().get_or_create(
                    scope=scope, key=key, defaults={"failures": 1, "window_start": now}
                )
                if created:
                    return 1, now
                if counter.window_start <= now - window:
                    count, start = 1, now
                else:
                    count, start = counter.failures + 1, counter.window_start
                LoginFailureCounter.objects.filter(pk=counter.pk).update(
                    failures=count, window_start=start
                )
                return count, start
        except IntegrityError:
            # Another request created the row between our read and insert: count again.
            continue
    raise RuntimeError(f"could not count a {scope} request: the counter kept changing")
