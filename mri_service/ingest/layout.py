"""What an upload's folders may say: operating-system clutter to skip, and the BreastWise folders.

Folder and file names never decide what an image is, with one exception: the BreastWise
layout (`pre/`, `1st_pass/`, `2nd_pass/`, `3rd_pass/`, at the top or inside one wrapping
folder) is an explicit statement of the phases, taken as such when all four are present.
"""

from __future__ import annotations

from collections.abc import Sequence

from mri_service.domain import PHASES
from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import show
from mri_service.ingest.study import InstanceHeader

# What zip tools on macOS add; never read.
IGNORED_FOLDERS = frozenset({"__MACOSX"})
IGNORED_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_EXPECTED = ", ".join(f"{phase}/" for phase in PHASES)


def is_ignored(name: str) -> bool:
    """Returns whether an entry is operating-system clutter that is skipped unread."""
    parts = name.rstrip("/").split("/")
    return parts[-1] in IGNORED_FILES or any(part in IGNORED_FOLDERS for part in parts)


def folder_hint(headers: Sequence[InstanceHeader]) -> dict[str, str] | None:
    """Returns folder -> phase when the images sit in the BreastWise folders, else None.

    Some but not all four folders is refused naming the missing one, as is a second set.

    Raises:
        SeriesRejected: the folders are incomplete or in more than one place.
    """
    found: dict[str, str] = {}
    for folder in {h.folder for h in headers}:
        leaf = folder.rsplit("/", 1)[-1]
        if leaf in PHASES and folder.count("/") <= 1:
            found[folder] = leaf
    if not found:
        return None
    parents = {f.rsplit("/", 1)[0] if "/" in f else "" for f in found}
    present = set(found.values())
    if len(found) != len(present) or len(parents) != 1:
        places = " and ".join(show(f"{p}/" if p else "/") for p in sorted(parents))
        raise SeriesRejected(
            f"the upload holds phase folders in more than one place ({places}); send one "
            f"study, with the folders {_EXPECTED} side by side",
            reason="SERIES_LAYOUT",
        )
    missing = [p for p in PHASES if p not in present]
    if missing:
        parent = parents.pop()
        where = f"{parent}/" if parent else ""
        raise SeriesRejected(
            f"the upload has phase folders but no {show(where + missing[0] + '/')} with DICOM "
            f"images; it needs the folders {_EXPECTED}",
            reason="SERIES_MISSING_PHASE",
        )
    return found
