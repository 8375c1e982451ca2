"""The site's URLs: each app mounts its own; apps written later mount once they exist."""

from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from web.accounts.views import admin_login
from web.core.mounting import mount

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("web.core.urls")),
    path("accounts/", include("web.accounts.urls")),
    # Pages: /diagnose/ and /history/ (diagnoses), /series/, /teach/.
    *mount("", "web.diagnoses.urls"),
    *mount("series/", "web.series.urls"),
    *mount("teach/", "web.teach.urls"),
    # REST API (DESIGN.md): /api/v1/…, its OpenAPI schema at /api/v1/schema/.
    *mount("api/v1/", "web.api.urls"),
    # Staff log in through the throttled log-in page too, never the admin's own form.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
]

handler400 = "web.core.views.bad_request"
handler403 = "web.core.views.permission_denied"
handler404 = "web.core.views.page_not_found"
handler500 = "web.core.views.server_error"
