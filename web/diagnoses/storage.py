"""Private storage of uploaded images: under MEDIA_ROOT (WEB_MEDIA_ROOT), owner-only, no URL."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage


class PrivateImageStorage(FileSystemStorage):
    """Files readable by this process's user only, reached only through the owner's views."""

    def url(self, name: str | None) -> str:
        """Refuses: these files have no public URL, only the authorised image views."""
        raise NotImplementedError("private images are served only by the diagnoses views")


def private_storage() -> PrivateImageStorage:
    """Returns the storage for the current settings (tests may change MEDIA_ROOT)."""
    return PrivateImageStorage(
        location=Path(settings.MEDIA_ROOT) / "diagnoses",
        file_permissions_mode=0o600,
        directory_permissions_mode=0o700,
    )
