"""The series operations' URLs, joined to the API's `api` namespace at /api/v1/."""

from django.urls import path

from web.series import api

urlpatterns = [
    path("series/", api.SeriesCreateApi.as_view(), name="series"),
    path("series/<uuid:job_id>/", api.SeriesItemApi.as_view(), name="series-detail"),
    path("series/<uuid:job_id>/sr", api.SeriesReportApi.as_view(), name="series-sr"),
    path("series/<uuid:job_id>/kos", api.SeriesKeyImagesApi.as_view(), name="series-kos"),
    path("series/<uuid:job_id>/retry", api.SeriesRetryApi.as_view(), name="series-retry"),
]
