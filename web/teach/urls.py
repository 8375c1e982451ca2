"""URLs of the teach pages, mounted at /teach/."""

from django.urls import path

from web.teach import views

app_name = "teach"

urlpatterns = [
    path("", views.home, name="home"),
    path("<uuid:pk>/", views.project, name="project"),
    path("<uuid:pk>/examples/", views.examples, name="examples"),
    path("<uuid:pk>/test/", views.test, name="test"),
    path("<uuid:pk>/publish/", views.publish, name="publish"),
    path("<uuid:pk>/delete/", views.delete, name="delete"),
]
