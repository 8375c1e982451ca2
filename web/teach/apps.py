"""The teach app's configuration."""

from django.apps import AppConfig


class TeachConfig(AppConfig):
    """Teachable-machine projects: pages at /teach/, websockets at /ws/teach/."""

    name = "web.teach"
    label = "teach"
    verbose_name = "Teachable machine"
    default_auto_field = "django.db.models.BigAutoField"
