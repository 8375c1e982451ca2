"""URLs of the REST API, mounted at /api/v1/ (web/config/urls.py); names in the `api` namespace."""

from __future__ import annotations

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.conf import settings
from django.urls import URLPattern, URLResolver, path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from web.api import views
from web.core.mounting import mount

app_name = "api"


urlpatterns: list[URLPattern | URLResolver] = [
    path("diagnoses/", views.DiagnosisCollectionApi.as_view(), name="diagnoses"),
    path("diagnoses/<uuid:diagnosis_id>/", views.DiagnosisItemApi.as_view(), name="diagnosis"),
    path(
        "diagnoses/<uuid:diagnosis_id>/retry/",
        views.DiagnosisRetryApi.as_view(),
        name="diagnosis-retry",
    ),
    path(
        "diagnoses/<uuid:diagnosis_id>/image/",
        views.DiagnosisImageApi.as_view(),
        name="diagnosis-image",
    ),
    path(
        "diagnoses/<uuid:diagnosis_id>/thumbnail/",
        views.DiagnosisThumbnailApi.as_view(),
        name="diagnosis-thumbnail",
    ),
    path("models/", views.ModelListApi.as_view(), name="models"),
    path("auth/token/", views.TokenCreateApi.as_view(), name="token"),
    # POST series/ and GET series/{id}/: the series app's API views, in web/series/api_urls.py
    # (its URL names join this `api` namespace: `series`, `series-detail`).
    *mount("", "web.series.api_urls"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]

# The docs pages' own scripts are files (the split view serves Swagger UI's set-up as
# ?script), but Swagger UI and Redoc style their elements inline, use data: icons and
# Redoc a blob: worker: only these two pages allow that, and still no foreign origin.
_docs_csp = csp_update(
    {"style-src": [UNSAFE_INLINE], "img-src": ["data:"], "worker-src": ["blob:"]}
)

if "drf_spectacular_sidecar" in settings.INSTALLED_APPS:
    # Swagger UI and Redoc from local static files (drf-spectacular-sidecar), no CDN.
    urlpatterns += [
        path(
            "docs/",
            _docs_csp(
                SpectacularSwaggerSplitView.as_view(
                    url_name="api:schema", template_name="api/swagger_ui.html"
                )
            ),
            name="docs",
        ),
        path(
            "redoc/",
            _docs_csp(
                SpectacularRedocView.as_view(url_name="api:schema", template_name="api/redoc.html")
            ),
            name="redoc",
        ),
    ]

# Last: any other URL under /api/v1/ is a 404 in the API's error shape, not an HTML page.
# `[\s\S]`, not `.`: a path with a newline in it (%0A) is an API URL too, not Django's HTML
# 404 page. (A `(?s)` flag would do the same, but Django cannot reverse URLs through it.)
urlpatterns += [re_path(r"^[\s\S]*$", views.not_found, name="not-found")]
