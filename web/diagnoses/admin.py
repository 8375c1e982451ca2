"""Admin listing of diagnosis records: metadata only; images are never shown or linked here."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from web.diagnoses.models import Diagnosis


@admin.register(Diagnosis)
class DiagnosisAdmin(admin.ModelAdmin[Diagnosis]):
    """Read-only: records change only through the owner's pages and the API."""

    list_display = ("id", "user", "disease", "status", "top_label", "model_version", "created_at")
    list_filter = ("status", "disease", "demo_model")
    search_fields = ("id", "request_id", "user__email")
    date_hierarchy = "created_at"
    exclude = ("image_name", "thumbnail_name")

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Records are made by uploads only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Diagnosis | None = None) -> bool:
        """Records are never edited by hand."""
        return False
