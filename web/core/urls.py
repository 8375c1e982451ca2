"""URLs of the core app: the landing page and the health probe."""

from django.urls import path

from web.core import views

app_name = "core"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
]
