"""URLs of the diagnoses pages, mounted at the site's root: /diagnose/… and /history/."""

from django.urls import path

from web.diagnoses import views

app_name = "diagnoses"

urlpatterns = [
    path("diagnose/", views.upload, name="upload"),
    path("diagnose/<uuid:diagnosis_id>/", views.detail, name="detail"),
    path("diagnose/<uuid:diagnosis_id>/image", views.image, name="image"),
    path("diagnose/<uuid:diagnosis_id>/thumbnail", views.thumbnail, name="thumbnail"),
    path("diagnose/<uuid:diagnosis_id>/retry/", views.retry, name="retry"),
    path("diagnose/<uuid:diagnosis_id>/delete/", views.delete, name="delete"),
    path("history/", views.history, name="history"),
]
