"""The series app's configuration; starts the in-process job worker where the site is served."""

from __future__ import annotations

from django.apps import AppConfig


class SeriesConfig(AppConfig):
    """MRI series: uploads, analysis jobs processed in the background, the slice viewer."""

    name = "web.series"
    label = "series"
    verbose_name = "MRI series"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Starts the job worker thread when this process serves the site (not for commands)."""
        from web.series import worker

        if worker.serving_process():
            worker.start_worker()
