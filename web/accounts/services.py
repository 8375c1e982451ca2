"""Writes of the accounts app: registration, profile changes, throttle counters, notices."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from web.accounts import selectors
from web.accounts.models import LoginFailureCounter, User, normalize_email_address
from web.accounts.throttle import (
    Limit,
    account_key,
    address_key,
    login_delays,
    pair_key,
    password_reset_limits,
    registration_limits,
)

logger = logging.getLogger(__name__)

_LOGIN_SCOPES = (
    LoginFailureCounter.Scope.ACCOUNT,
    LoginFailureCounter.Scope.ADDRESS,
    LoginFailureCounter.Scope.PAIR,
)


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


@dataclass(frozen=True)
class LoginAttempt:
    """A log-in attempt as counted: how long it must wait (None: check the password)."""

    email: str
    address: str
    wait: int | None
    # Attempts on the account from every address within its window, this one included.
    account_attempts: int = 0


def login_attempt_begin(
    *, email: str, address: str, now: dt.datetime | None = None
) -> LoginAttempt:
    """Counts a log-in attempt before its password is checked, unless a delay applies.

    Every counter of the attempt (web.accounts.throttle.login_delays) is read and
    written under its row lock in one transaction, so parallel attempts are counted one
    after the other and each sees the delay the previous one set: none slips under it.
    An attempt that must wait is not counted and its password is not checked.
    """
    given = now
    window = dt.timedelta(seconds=settings.WEB_LOGIN_WINDOW_SECONDS)
    known = selectors.login_address_known(email=email, address=address, now=given or timezone.now())
    delays = login_delays(email=email, address=address, known=known)
    for _attempt in range(2):
        try:
            with transaction.atomic():
                rows = [
                    _locked_counter(delay.scope, delay.key, now=given or timezone.now())
                    for delay in delays
                ]
                # The clock is read once the rows are ours: a parallel attempt that held
                # them set its delay from its own time, which is then never in our future.
                now = given or timezone.now()
                waits = [
                    (row.blocked_until - now).total_seconds()
                    for delay, row in zip(delays, rows, strict=True)
                    if delay.enforced and row.blocked_until is not None and row.blocked_until > now
                ]
                if waits:
                    return LoginAttempt(email, address, wait=max(1, math.ceil(max(waits))))
                account_attempts = 0
                for delay, row in zip(delays, rows, strict=True):
                    blocked = row.blocked_until is not None and row.blocked_until > now
                    if row.window_start <= now - window and not blocked:
                        count, start = 1, now
                    else:
                        count, start = row.failures + 1, row.window_start
                    seconds = delay.seconds(count)
                    until = now + dt.timedelta(seconds=seconds) if seconds else row.blocked_until
                    LoginFailureCounter.objects.filter(pk=row.pk).update(
                        failures=count, window_start=start, blocked_until=until
                    )
                    if delay.scope == LoginFailureCounter.Scope.ACCOUNT:
                        account_attempts = count
        except IntegrityError:
            # Another attempt created a row between our read and insert: count again.
            continue
        _prune(_LOGIN_SCOPES, now=now, window=window)
        return LoginAttempt(email, address, wait=None, account_attempts=account_attempts)
    raise RuntimeError("could not count a log-in attempt: the counters kept changing")


def login_failure_record(*, attempt: LoginAttempt, now: dt.datetime | None = None) -> None:
    """Tells the account's owner, once per window, that its log-ins keep failing.

    The attempt was counted already (login_attempt_begin). The notice goes once the
    account has failed WEB_LOGIN_NOTIFY_AFTER_FAILURES times within the window, from
    any address; whether the account exists changes nothing in the answer: the e-mail is
    sent from a thread of its own, after the same counting for every address.
    """
    if attempt.account_attempts < settings.WEB_LOGIN_NOTIFY_AFTER_FAILURES:
        return
    now = now or timezone.now()
    window = dt.timedelta(seconds=settings.WEB_LOGIN_WINDOW_SECONDS)
    notices, _start = _bump(
        LoginFailureCounter.Scope.NOTIFY, account_key(attempt.email), now=now, window=window
    )
    _prune((LoginFailureCounter.Scope.NOTIFY,), now=now, window=window)
    if notices != 1:
        return
    user = User.objects.filter(email=normalize_email_address(attempt.email), is_active=True).first()
    if user is not None:
        threading.Thread(
            target=_send_failure_notice,
            kwargs={"to": user.email, "name": user.name, "failures": attempt.account_attempts},
            name="login-failure-notice",
            daemon=True,
        ).start()


def _send_failure_notice(*, to: str, name: str, failures: int) -> None:
    """E-mails the failure notice; a mail server that fails is logged, never raised."""
    context = {
        "name": name,
        "failures": failures,
        "window_minutes": max(1, settings.WEB_LOGIN_WINDOW_SECONDS // 60),
        "site_name": settings.WEB_SITE_NAME,
    }
    subject = render_to_string("accounts/email/login_failures_subject.txt", context).strip()
    body = render_to_string("accounts/email/login_failures.txt", context)
    try:
        send_mail(subject, body, None, [to])
    except Exception:
        # No address in the log: the request id is not here either (another thread).
        logger.exception("could not send a log-in failure notice")


def login_success_record(*, attempt: LoginAttempt, now: dt.datetime | None = None) -> None:
    """Forgets the account's attempts, gives the address its one back, and remembers it.

    The address is then known to the account for WEB_LOGIN_KNOWN_ADDRESS_DAYS: the
    per-account delay (many addresses trying it) no longer applies to it.
    """
    now = now or timezone.now()
    scope = LoginFailureCounter.Scope
    pair = pair_key(attempt.email, attempt.address)
    with transaction.atomic():
        LoginFailureCounter.objects.filter(
            Q(scope=scope.ACCOUNT, key=account_key(attempt.email)) | Q(scope=scope.PAIR, key=pair)
        ).delete()
        address = LoginFailureCounter.objects.filter(
            scope=scope.ADDRESS, key=address_key(attempt.address), failures__gt=0
        )
        address.update(failures=F("failures") - 1)
        address.filter(failures__lte=settings.WEB_LOGIN_MAX_FAILURES_PER_ADDRESS).update(
            blocked_until=None
        )
        LoginFailureCounter.objects.update_or_create(
            scope=scope.KNOWN, key=pair, defaults={"failures": 1, "window_start": now}
        )
    known_for = dt.timedelta(days=settings.WEB_LOGIN_KNOWN_ADDRESS_DAYS)
    LoginFailureCounter.objects.filter(scope=scope.KNOWN, window_start__lt=now - known_for).delete()


def _locked_counter(scope: str, key: str, *, now: dt.datetime) -> LoginFailureCounter:
    """Returns a counter row under its lock, created empty if missing (inside a transaction)."""
    counter, _created = LoginFailureCounter.objects.select_for_update().get_or_create(
        scope=scope, key=key, defaults={"failures": 0, "window_start": now}
    )
    return counter


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
