"""Middleware of the web tier: the health probe, request ids, the log-in requirement, the CSP."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

from servicekit.request_context import (
    REQUEST_ID_KEY,
    accept_request_id,
    reset_request_id,
    set_request_id,
)
from web.core.views import healthz

logger = logging.getLogger("web.request")

HEALTH_PATH = "/healthz"
# The response header that carries the request id back to the caller.
REQUEST_ID_HEADER = "X-Request-ID"

Handler = Callable[[HttpRequest], HttpResponseBase]


class HealthCheckMiddleware:
    """Answers /healthz before anything checks the Host header or redirects to HTTPS.

    The kubelet calls the pod by IP over plain HTTP; the probe must see the process,
    not the site's host and scheme rules. Nothing here touches the database.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        """Returns the probe's answer for /healthz, else the rest of the chain's."""
        if request.path_info == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)


class RequestIdMiddleware:
    """Gives each request an id (the caller's X-Request-ID when well-formed, else a new one).

    The id is current for the gateway client and the log lines while the request is
    served (servicekit's request context), is `request.request_id`, and goes back in
    the response's X-Request-ID header. One log line per request: method, path (never
    the query string), status and duration.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        """Serves the request with its id current and echoes the id in the response."""
        request_id = accept_request_id(request.headers.get(REQUEST_ID_KEY))
        request.request_id = request_id  # type: ignore[attr-defined]  # read by views and the API
        token = set_request_id(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            logger.info(
                "%s %s %d",
                request.method,
                request.path,
                response.status_code,
                extra={"duration_ms": round((time.perf_counter() - started) * 1000, 1)},
            )
        finally:
            reset_request_id(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Requires log-in for every page but those marked `login_not_required`.

    The REST API (and anything under WEB_LOGIN_EXEMPT_PREFIXES) is left alone: it
    authenticates tokens itself and answers 401 in JSON rather than redirecting.
    """

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        """Lets exempt prefixes through; otherwise applies Django's rule."""
        if request.path_info.startswith(tuple(settings.WEB_LOGIN_EXEMPT_PREFIXES)):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's header (settings.CONTENT_SECURITY_POLICY), plus the page's own websockets.

    `connect-src 'self'` covers ws:// and wss:// of the same host in CSP 3, but not in
    every browser yet, so the origin the page was served from is named too: ws://host
    over HTTP, wss://host over HTTPS (the teach pages' sockets), never another host.
    """

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        """Returns the configured policy with this host's websocket origin in connect-src."""
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts  # a refused Host header gets the policy without a socket origin
        scheme = "wss" if request.is_secure() else "ws"
        update = dict(parts.update or {})
        connect = update.get("connect-src") or []
        connect = [connect] if isinstance(connect, str) else list(connect)
        update["connect-src"] = [*connect, f"{scheme}://{host}"]
        return dataclasses.replace(parts, update=update)
