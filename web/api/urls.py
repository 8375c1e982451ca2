"""URLs of the REST API, mounted at /api/v1/ (web/config/urls.py); names in the `api` namespace."""

from __future__ import annotations

from django.conf import settings
from django.urls import URLPattern, URLResolver, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

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

if "drf_spectacular_sidecar" in settings.INSTALLED_APPS:
    # Swagger UI and Redoc from local static files (drf-spectacular-sidecar), no CDN.
    urlpatterns += [
        path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
        path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    ]

# Last: any other URL under /api/v1/ is a 404 in the API's error shape, not an HTML page.
urlpatterns += [re_path(r"^.*$", views.not_found, name="not-found")]
