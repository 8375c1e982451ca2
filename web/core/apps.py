"""The core app's configuration."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Landing page, /healthz, base templates, static styles and error pages."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "web.core"
    label = "core"
