"""Private storage of series zips, partial uploads, thumbnails, SRs and KOSs: owner-only, no URL."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage

PARTIAL_DIR = "partial"
ZIP_DIR = "zips"
THUMBNAIL_DIR = "thumbnails"
# One folder per job: sr.dcm and kos.dcm, the de-identified DICOM results.
REPORT_DIR = "reports"
REPORT_FILES = {"sr": "sr.dcm", "kos": "kos.dcm"}


class PrivateSeriesStorage(FileSystemStorage):
    """Files readable by this process's user only, reached only through the owner's views."""

    def url(self, name: str | None) -> str:
        """Refuses: these files have no public URL, only the authorised views."""
        raise NotImplementedError("series files are served only by the series views")


def series_storage() -> PrivateSeriesStorage:
    """Returns the storage for the current settings (tests may change MEDIA_ROOT)."""
    return PrivateSeriesStorage(
        location=series_root(),
        file_permissions_mode=0o600,
        directory_permissions_mode=0o700,
    )


def series_root() -> Path:
    """Returns the folder under MEDIA_ROOT that holds everything of this app."""
    return Path(settings.MEDIA_ROOT) / "series"


def private_dir(name: str) -> Path:
    """Returns one of the app's folders, created owner-only if missing."""
    folder = series_root() / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder
