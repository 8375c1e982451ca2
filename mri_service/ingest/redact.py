"""Keeps patient identifiers out of the paths ingestion reports, in messages and in answers.

Folder and file names are the caller's, and exports often carry the patient in them (the
NBIA Data Retriever names a folder by PatientID; PACS viewers export to folders named by
PatientName). The survey gives every PatientID, PatientName and PatientBirthDate it meets
to one Redactor per upload, held in memory for that call only. While it is `active`,
`archive.show` (how every message names an entry) scrubs each path, as does the list of
skipped files. Only paths are scrubbed: series descriptions and attribute names stay
readable. An identifier is only known once a header carrying it has been read, so a
refusal of the very first file names its path as given.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

PLACEHOLDER = "[patient]"
# Shorter pieces (initials, "MR") would blank ordinary words without protecting anyone.
_MIN_LENGTH = 3


class Redactor:
    """The patient identifiers met so far in one upload, and their removal from text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._last: tuple[str, ...] = ()

    def add(self, *values: str) -> None:
        """Remembers identifiers; a person name counts whole and by each of its components."""
        if values == self._last:  # every file of a study repeats them
            return
        self._last = values
        for value in values:
            text = value.strip()
            pieces = {text, *re.split(r"[\^=,\s]+", text)}
            if re.fullmatch(r"\d{8}", text):  # a DA birth date, also as written with dashes
                pieces.add(f"{text[:4]}-{text[4:6]}-{text[6:]}")
            fresh = {p for p in pieces if len(p) >= _MIN_LENGTH} - self._values
            if fresh:
                self._values |= fresh
                self._pattern = None

    def scrub(self, text: str) -> str:
        """Returns text with every known identifier replaced by PLACEHOLDER."""
        if not self._values:
            return text
        if self._pattern is None:
            ordered = sorted(self._values, key=len, reverse=True)
            alternatives = "|".join(map(re.escape, ordered))
            # Whole pieces only: "Patient" inside "PatientFiles" is a word, not a name.
            self._pattern = re.compile(
                rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE
            )
        return self._pattern.sub(PLACEHOLDER, text)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Makes this the redactor `scrub_path` uses, in this thread, for the block."""
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)


_ACTIVE: ContextVar[Redactor | None] = ContextVar("medimg_mri_redactor", default=None)


def scrub_path(path: str) -> str:
    """Returns path with the active upload's patient identifiers scrubbed (as is without one)."""
    redactor = _ACTIVE.get()
    return path if redactor is None else redactor.scrub(path)
