"""The REST API app's configuration."""

from __future__ import annotations

from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The versioned REST API other programs call: /api/v1/."""

    name = "web.api"
    label = "api"
    verbose_name = "REST API"
    default_auto_field = "django.db.models.BigAutoField"
