"""The diagnoses app's configuration."""

from __future__ import annotations

from django.apps import AppConfig


class DiagnosesConfig(AppConfig):
    """Uploads, results, history and e-mail of results."""

    name = "web.diagnoses"
    label = "diagnoses"
    verbose_name = "Diagnoses"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connects the receiver that removes a deleted record's files."""
        from web.diagnoses import signals  # noqa: F401
