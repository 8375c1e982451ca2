"""The landing page, the health probe and the error pages."""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# What a caller is told to wait while the database is away: a restart takes seconds.
DATABASE_RETRY_AFTER_S = 5


@login_not_required
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """Shows the product to visitors and the way in to signed-in users."""
    return render(request, "core/home.html")


@login_not_required
@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """Tells probes the process serves requests; reads and writes nothing."""
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Renders the 400 page."""
    return _error(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Renders the 403 page."""
    return _error(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Renders the 404 page."""
    return _error(request, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    """Renders the 500 page from a plain context: no session, no database, no request data.

    A database that cannot be reached (restarted, failed over, out of connections) is
    not the caller's fault nor lasting: that is 503 with Retry-After, for the page and the
    API alike, so that clients retry instead of giving up. Django calls this inside the
    `except` that caught the error, so `sys.exc_info()` names it, wherever it was raised:
    in a view, or in a middleware (the session's).
    """
    error = sys.exc_info()[1]
    if isinstance(error, OperationalError | InterfaceError):
        return _database_unavailable(request, error)
    body = loader.get_template("500.html").render({"product_name": settings.WEB_SITE_NAME})
    return HttpResponse(body, status=500)


def _database_unavailable(request: HttpRequest, error: Exception) -> HttpResponse:
    # The driver's message may quote SQL and its parameters: the type says enough.
    logger.warning("database unavailable (%s): answered 503", type(error).__name__)
    message = "The service is briefly unavailable; try again in a few seconds."
    response: HttpResponse
    if request.path_info.startswith("/api/"):
        request_id = str(getattr(request, "request_id", ""))
        response = JsonResponse(
            {"error": {"code": "UNAVAILABLE", "message": message, "request_id": request_id}},
            status=503,
        )
    else:
        context = {"product_name": settings.WEB_SITE_NAME, "message": message}
        response = HttpResponse(loader.get_template("503.html").render(context), status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


def _error(request: HttpRequest, status: int) -> HttpResponse:
    return render(request, f"{status}.html", status=status)
