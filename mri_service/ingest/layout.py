"""Maps a series source's entries to the four phase folders, refusing any other layout."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from mri_service.domain import PHASES, PRE
from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import Entry, show
from mri_service.ingest.limits import IngestLimits

# What zip tools on macOS add; never read.
IGNORED_FOLDERS = frozenset({"__MACOSX"})
IGNORED_FILES = frozenset({".DS_Store"})
_EXPECTED = ", ".join(f"{phase}/" for phase in PHASES)


@dataclass(frozen=True)
class Layout:
    """The DICOM entries of each phase, keyed by file name, and the wrapping folder."""

    prefix: str  # "case7/" when one folder wraps the phases, else ""
    phases: dict[str, dict[str, Entry]]  # phase -> file name -> entry, names sorted

    @property
    def slice_count(self) -> int:
        """Returns the number of files in each phase (equal in all)."""
        return len(self.phases[PRE])

    def folder(self, phase: str) -> str:
        """Returns the phase's folder as an entry path, for messages."""
        return f"{self.prefix}{phase}/"


def _refuse(message: str, reason: str = "SERIES_LAYOUT") -> SeriesRejected:
    return SeriesRejected(message, reason=reason)


def is_ignored(name: str) -> bool:
    """Returns whether an entry is operating-system clutter that is skipped unread."""
    parts = name.rstrip("/").split("/")
    return parts[-1] in IGNORED_FILES or any(part in IGNORED_FOLDERS for part in parts)


def _wrap_prefix(files: Sequence[Entry]) -> str:
    """Returns the wrapping folder most files sit in ("" if the phases are at the top)."""
    tops = Counter(entry.name.split("/", 1)[0] for entry in files if "/" in entry.name)
    if not tops:
        return ""
    top = tops.most_common(1)[0][0]
    return "" if top in PHASES else f"{top}/"


def plan_layout(entries: Sequence[Entry], limits: IngestLimits) -> Layout:
    """Returns the phase files of a series, or refuses its layout naming the offending entry."""
    kept = [entry for entry in entries if not is_ignored(entry.name)]
    files = [entry for entry in kept if not entry.is_dir]
    if not files:
        raise _refuse(f"the series holds no DICOM files; it needs the folders {_EXPECTED}")
    prefix = _wrap_prefix(files)
    allowed_folders = {prefix, *(f"{prefix}{phase}/" for phase in PHASES)}
    for entry in kept:
        if entry.is_dir and entry.name not in allowed_folders:
            raise _unexpected(entry.name, "folder")
    phases: dict[str, dict[str, Entry]] = {}
    for entry in files:
        parts = entry.name[len(prefix) :].split("/") if entry.name.startswith(prefix) else []
        if len(parts) != 2 or parts[0] not in PHASES:
            raise _unexpected(entry.name, "entry")
        phases.setdefault(parts[0], {})[parts[1]] = entry
    layout = Layout(
        prefix, {phase: dict(sorted(phases.get(phase, {}).items())) for phase in PHASES}
    )
    _check_phases(layout, limits)
    return layout


def _unexpected(name: str, kind: str) -> SeriesRejected:
    return _refuse(
        f"unexpected {kind} {show(name)}: the series may hold only the folders {_EXPECTED} "
        "of DICOM files, inside at most one wrapping folder"
    )


def _check_phases(layout: Layout, limits: IngestLimits) -> None:
    for phase, files in layout.phases.items():
        if not files:
            raise _refuse(
                f"the series has no folder {show(layout.folder(phase))} with DICOM files; "
                f"it needs the folders {_EXPECTED}",
                "SERIES_MISSING_PHASE",
            )
    pre = layout.phases[PRE]
    for phase, files in layout.phases.items():
        if len(files) != len(pre):
            raise _refuse(
                f"{show(layout.folder(phase))} holds {len(files)} files but "
                f"{show(layout.folder(PRE))} holds {len(pre)}; every phase needs the same files",
                "SERIES_MISMATCHED_PHASES",
            )
        for name in pre:
            if name not in files:
                raise _refuse(
                    f"{show(layout.folder(phase) + name)} is missing: every file in "
                    f"{show(layout.folder(PRE))} needs a file of the same name in every phase",
                    "SERIES_MISMATCHED_PHASES",
                )
    count = layout.slice_count
    if not limits.min_slices <= count <= limits.max_slices:
        raise _refuse(
            f"{show(layout.folder(PRE))} holds {count} slices; a series needs between "
            f"{limits.min_slices} and {limits.max_slices} slices per phase",
            "SERIES_SLICE_COUNT",
        )
