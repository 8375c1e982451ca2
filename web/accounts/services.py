"""Writes of the accounts app: registration, profile changes, failed log-in counters."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from web.accounts.models import LoginFailureCounter, User
from web.accounts.throttle import account_key, address_key


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
    # Counters whose window ended long ago say nothing: keep the table small.
    LoginFailureCounter.objects.filter(window_start__lt=now - 2 * window).delete()


def login_success_record(*, email: str) -> None:
    """Forgets the account's failures once its owner has logged in."""
    LoginFailureCounter.objects.filter(
        scope=LoginFailureCounter.Scope.ACCOUNT, key=account_key(email)
    ).delete()


def _bump(scope: str, key: str, *, now: dt.datetime, window: dt.timedelta) -> None:
    """Adds one failure to a counter, starting a new window when the last one ended."""
    for _attempt in range(2):
        try:
            with transaction.atomic():
                counter, created = LoginFailureCounter.objects.select_for_update().get_or_create(
                    scope=scope, key=key, defaults={"failures": 1, "window_start": now}
                )
                if created:
                    return
                if counter.window_start <= now - window:
                    LoginFailureCounter.objects.filter(pk=counter.pk).update(
                        failures=1, window_start=now
                    )
                else:
                    LoginFailureCounter.objects.filter(pk=counter.pk).update(
                        failures=F("failures") + 1
                    )
                return
        except IntegrityError:
            # Another request created the row between our read and insert: count again.
            continue
