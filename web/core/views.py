"""The landing page, the health probe and the error pages."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe


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
    """Renders the 500 page from a plain context: no session, no database, no request data."""
    body = loader.get_template("500.html").render({"product_name": settings.WEB_SITE_NAME})
    return HttpResponse(body, status=500)


def _error(request: HttpRequest, status: int) -> HttpResponse:
    return render(request, f"{status}.html", status=status)
