"""URLs of the series pages, mounted at /series/."""

from django.urls import path

from web.series import views

app_name = "series"

urlpatterns = [
    path("", views.upload, name="upload"),
    path("upload/", views.chunk, name="chunk"),
    path("upload/<str:upload_id>/", views.chunk_status, name="chunk-status"),
    path("<uuid:job_id>/", views.detail, name="detail"),
    path("<uuid:job_id>/progress", views.progress, name="progress"),
    path("<uuid:job_id>/slices/<int:index>.png", views.thumbnail, name="thumbnail"),
    path("<uuid:job_id>/sr.dcm", views.measurement_report, name="sr"),
    path("<uuid:job_id>/kos.dcm", views.key_images, name="kos"),
    path("<uuid:job_id>/retry/", views.retry, name="retry"),
    path("<uuid:job_id>/delete/", views.delete, name="delete"),
]
