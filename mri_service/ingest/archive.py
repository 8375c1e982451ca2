"""Lists and reads the entries of an uploaded series zip (or a folder) with every size bounded.

Nothing here trusts what an archive says about itself: names are checked before any
entry is opened, the table of contents is size-checked before zipfile parses it, and
every entry is read with a bound, counting the bytes actually produced (a header's
sizes may lie). Folder sources are the trainer's own data; they get the same bounds
but may hold symbolic links.
"""

from __future__ import annotations

import lzma
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from mri_service.errors import SeriesRejected
from mri_service.ingest.limits import MIB, IngestLimits
from mri_service.ingest.redact import scrub_path

_CHUNK = 1 * MIB
# Average bytes allowed per entry in the zip's table of contents: a 46-byte record, the
# name and extra fields. zipfile parses the whole table into objects at open, so a
# table far larger than `max_entries` could need is refused before it is parsed.
_MAX_RECORD_BYTES = 1024
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_ENCRYPTED_FLAGS = 0x1 | 0x40  # traditional and strong encryption
# Errors zipfile and its decompressors raise on damaged or truncated data.
_DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)

ARCHIVE_SUFFIXES = (
    ".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".tbz", ".tbz2", ".xz", ".txz",
    ".zst", ".lz", ".lzma", ".z", ".cab", ".jar",
)  # fmt: skip
ARCHIVE_MAGIC = (
    b"PK\x03\x04",  # zip
    b"PK\x05\x06",  # empty zip
    b"PK\x07\x08",  # spanned zip
    b"\x1f\x8b",  # gzip
    b"\x1f\x9d",  # compress (.Z)
    b"7z\xbc\xaf\x27\x1c",  # 7-Zip
    b"\xfd7zXZ\x00",  # xz
    b"Rar!\x1a\x07",  # RAR
    b"\x28\xb5\x2f\xfd",  # Zstandard
    b"MSCF",  # cabinet
)


@dataclass(frozen=True)
class Entry:
    """One entry of a series source, as its table of contents (or the file system) describes it."""

    name: str  # path inside the zip (or relative to the folder), "/"-separated
    is_dir: bool
    declared_size: int  # uncompressed size as declared; checked against what is read
    compressed_size: int | None  # None for folder sources


def show(name: str) -> str:
    """Returns an entry name fit for a message: scrubbed, quoted, printable, not too long."""
    printable = "".join(c if c.isprintable() else "?" for c in scrub_path(name))
    if len(printable) > 120:
        printable = f"{printable[:60]}...{printable[-57:]}"
    return f"'{printable}'"


def _refuse(message: str, reason: str) -> SeriesRejected:
    return SeriesRejected(message, reason=reason)


def unsafe_name_reason(name: str) -> str | None:
    """Returns why an entry name could escape the folder it is unpacked into, or None."""
    if "\\" in name:
        return "uses backslashes"
    if name.startswith("/"):
        return "is an absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isascii() and name[0].isalpha():
        return "starts with a drive letter"
    if any(not c.isprintable() for c in name):
        return "contains control characters"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "climbs out of its folder with '..'"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' path component"
    return None


def refuse_nested_archive(name: str, data: bytes) -> None:
    """Raises SeriesRejected when data is itself an archive, whatever its name says."""
    is_tar = data[257:262] == b"ustar" and data[128:132] != b"DICM"
    is_bzip2 = data[:3] == b"BZh" and data[3:4].isdigit()
    if data.startswith(ARCHIVE_MAGIC) or is_tar or is_bzip2:
        raise _refuse(
            f"entry {show(name)} is itself an archive; send one zip of DICOM files, "
            "without archives inside it",
            "SERIES_NESTED_ARCHIVE",
        )


class _Budget:
    """Counts the bytes actually read from a source against the per-series cap."""

    def __init__(self, limits: IngestLimits) -> None:
        self._limits = limits
        self.total = 0

    def add(self, name: str, count: int) -> None:
        self.total += count
        if self.total > self._limits.max_uncompressed_bytes:
            raise _refuse(
                f"the series unpacks to more than {_size(self._limits.max_uncompressed_bytes)} "
                f"(reached at entry {show(name)}); send a smaller series",
                "SERIES_TOO_LARGE",
            )


def _size(count: int | float) -> str:
    return f"{count / MIB:.1f} MB"


def _read_bounded(
    name: str, stream: IO[bytes], bound: int, budget: _Budget, prefix: int | None = None
) -> bytes | None:
    """Returns the stream's bytes, or None once more than bound bytes came out of it.

    With `prefix`, stops once that many bytes are read and returns them: a header read
    that leaves the pixel data unread.
    """
    chunks: list[bytes] = []
    count = 0
    want = bound + 1 if prefix is None else min(prefix, bound + 1)
    while count < want:
        chunk = stream.read(min(_CHUNK, want - count))
        if not chunk:
            break
        count += len(chunk)
        budget.add(name, len(chunk))
        if count > bound:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class ZipSource:
    """The entries of a zip file, their names and flags checked before any is opened."""

    def __init__(self, path: Path, limits: IngestLimits) -> None:
        self._limits = limits
        self._budget = _Budget(limits)
        with path.open("rb") as raw:
            _check_table_size(raw, path.stat().st_size, limits)
        try:
            self._zip = zipfile.ZipFile(path)
        except (*_DAMAGED, NotImplementedError):
            raise _not_a_zip() from None
        try:
            self._infos = {info.filename: info for info in self._checked_infos()}
        except BaseException:
            self._zip.close()
            raise

    def _checked_infos(self) -> list[zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > self._limits.max_entries:
            raise _refuse(
                f"the zip holds more than {self._limits.max_entries} entries (from entry "
                f"{show(infos[self._limits.max_entries].filename)} on); send one series only",
                "SERIES_TOO_MANY_ENTRIES",
            )
        seen: set[str] = set()
        for info in infos:
            _check_info(info)
            if info.filename in seen:
                raise _refuse(
                    f"entry {show(info.filename)} appears twice in the zip; every name must be "
                    "unique",
                    "SERIES_DUPLICATE_ENTRY",
                )
            seen.add(info.filename)
        return infos

    def entries(self) -> list[Entry]:
        """Returns every entry in the zip's order."""
        return [
            Entry(info.filename, info.is_dir(), info.file_size, info.compress_size)
            for info in self._infos.values()
        ]

    def check_declared(self, entries: list[Entry]) -> None:
        """Refuses entries whose declared sizes already break a cap, before inflating any."""
        total = 0
        for entry in entries:
            total += entry.declared_size
            if entry.declared_size > self._limits.max_entry_bytes:
                raise _entry_too_large(entry.name, self._limits)
            compressed = max(entry.compressed_size or 0, 1)
            if entry.declared_size > self._limits.max_compression_ratio * compressed:
                raise _ratio_too_high(entry.name, self._limits)
            if total > self._limits.max_uncompressed_bytes:
                raise _refuse(
                    f"the series declares more than {_size(self._limits.max_uncompressed_bytes)} "
                    f"of files (reached at entry {show(entry.name)}); send a smaller series",
                    "SERIES_TOO_LARGE",
                )

    def read(self, name: str, prefix: int | None = None) -> bytes:
        """Returns one entry's bytes (its first `prefix` bytes only, when given).

        Refuses the entry as soon as any cap is passed.
        """
        info = self._infos[name]
        ratio_bound = int(self._limits.max_compression_ratio * max(info.compress_size, 1))
        bound = min(self._limits.max_entry_bytes, ratio_bound)
        try:
            with self._zip.open(info) as stream:
                data = _read_bounded(name, stream, bound, self._budget, prefix)
        except _DAMAGED:
            raise _refuse(
                f"entry {show(name)} is damaged or truncated; create the zip again",
                "SERIES_DAMAGED",
            ) from None
        if data is None:
            if bound == self._limits.max_entry_bytes:
                raise _entry_too_large(name, self._limits)
            raise _ratio_too_high(name, self._limits)
        refuse_nested_archive(name, data)
        return data

    def close(self) -> None:
        """Closes the zip file."""
        self._zip.close()


def _check_info(info: zipfile.ZipInfo) -> None:
    name = info.filename
    why = unsafe_name_reason(name)
    if why is not None:
        raise _refuse(
            f"entry {show(name)} {why}; entries must be relative paths inside the zip",
            "SERIES_UNSAFE_ENTRY",
        )
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise _refuse(
            f"entry {show(name)} is a symbolic link; send the files themselves",
            "SERIES_UNSAFE_ENTRY",
        )
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _refuse(
            f"entry {show(name)} is a special file; send only folders and DICOM files",
            "SERIES_UNSAFE_ENTRY",
        )
    if info.flag_bits & _ENCRYPTED_FLAGS:
        raise _refuse(
            f"entry {show(name)} is encrypted; send the zip without a password",
            "SERIES_ENCRYPTED",
        )
    if info.compress_type not in _READABLE_METHODS:
        raise _refuse(
            f"entry {show(name)} uses an unsupported compression method "
            f"({info.compress_type}); use the zip tool's standard (deflate) compression",
            "SERIES_UNSUPPORTED_COMPRESSION",
        )
    if not info.is_dir() and PurePosixPath(name).suffix.lower() in ARCHIVE_SUFFIXES:
        raise _refuse(
            f"entry {show(name)} is an archive inside the zip; send one zip of DICOM files, "
            "without archives inside it",
            "SERIES_NESTED_ARCHIVE",
        )


def _entry_too_large(name: str, limits: IngestLimits) -> SeriesRejected:
    return _refuse(
        f"entry {show(name)} is larger than {_size(limits.max_entry_bytes)}; "
        "one DICOM slice should be far smaller",
        "SERIES_ENTRY_TOO_LARGE",
    )


def _ratio_too_high(name: str, limits: IngestLimits) -> SeriesRejected:
    return _refuse(
        f"entry {show(name)} unpacks to more than {limits.max_compression_ratio:g} times "
        "its compressed size, which DICOM slices never do; it looks like a zip bomb",
        "SERIES_COMPRESSION_RATIO",
    )


def _not_a_zip() -> SeriesRejected:
    return _refuse(
        "the upload is not a readable zip file (it is truncated or damaged); "
        "send the series as one complete zip",
        "SERIES_DAMAGED",
    )


def _check_table_size(raw: BinaryIO, file_size: int, limits: IngestLimits) -> None:
    """Refuses a zip whose table of contents is too large to parse, from its end record."""
    tail_length = min(file_size, _EOCD.size + 0xFFFF)
    raw.seek(file_size - tail_length)
    tail = raw.read(tail_length)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise _not_a_zip()
    *_, count, table_size, _, _ = _EOCD.unpack_from(tail, at)
    if (count == 0xFFFF or table_size == 0xFFFFFFFF) and at >= _ZIP64_LOCATOR.size:
        signature, _, record_at, _ = _ZIP64_LOCATOR.unpack_from(tail, at - _ZIP64_LOCATOR.size)
        if signature != b"PK\x06\x07" or record_at + _ZIP64_EOCD.size > file_size:
            raise _not_a_zip()
        raw.seek(record_at)
        record = raw.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or not record.startswith(b"PK\x06\x06"):
            raise _not_a_zip()
        table_size = _ZIP64_EOCD.unpack(record)[8]
    if table_size > limits.max_entries * _MAX_RECORD_BYTES:
        raise _refuse(
            f"the zip's table of contents is {_size(table_size)}, more than "
            f"{limits.max_entries} entries need; send one series only",
            "SERIES_TOO_MANY_ENTRIES",
        )


class FolderSource:
    """The files under a folder laid out like the upload zip; used by training."""

    def __init__(self, root: Path, limits: IngestLimits) -> None:
        self._root = root
        self._limits = limits
        self._budget = _Budget(limits)
        self._entries = self._walk()

    def _walk(self) -> list[Entry]:
        entries: list[Entry] = []
        # Links are followed (the trainer's own data may use them); the entry cap ends a loop.
        for folder, dirs, files in os.walk(self._root, followlinks=True):
            dirs.sort()
            relative = Path(folder).relative_to(self._root).as_posix()
            prefix = "" if relative == "." else f"{relative}/"
            if prefix:
                entries.append(Entry(prefix, True, 0, None))
            entries.extend(Entry(prefix + name, False, 0, None) for name in sorted(files))
            if len(entries) > self._limits.max_entries:
                raise _refuse(
                    f"the folder holds more than {self._limits.max_entries} entries (from "
                    f"{show(entries[self._limits.max_entries].name)} on); "
                    "it should hold one series",
                    "SERIES_TOO_MANY_ENTRIES",
                )
        return entries

    def entries(self) -> list[Entry]:
        """Returns every file and folder under the root, folders first, names sorted."""
        return list(self._entries)

    def check_declared(self, entries: list[Entry]) -> None:
        """Does nothing: a folder declares no sizes; reads are bounded all the same."""

    def read(self, name: str, prefix: int | None = None) -> bytes:
        """Returns one file's bytes (its first `prefix` bytes only, when given).

        Refuses the file as soon as a cap is passed.
        """
        path = self._root / name
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                raise _refuse(f"{show(name)} is not a regular file", "SERIES_UNSAFE_ENTRY")
            with path.open("rb") as stream:
                data = _read_bounded(
                    name, stream, self._limits.max_entry_bytes, self._budget, prefix
                )
        except OSError:
            raise _refuse(f"{show(name)} cannot be read", "SERIES_DAMAGED") from None
        if data is None:
            raise _entry_too_large(name, self._limits)
        refuse_nested_archive(name, data)
        return data

    def close(self) -> None:
        """Does nothing: files are opened one read at a time."""


Source = ZipSource | FolderSource


@contextmanager
def open_source(path: Path, limits: IngestLimits) -> Iterator[Source]:
    """Yields the entries of a series zip or folder; the zip is closed on exit."""
    source: Source = FolderSource(path, limits) if path.is_dir() else ZipSource(path, limits)
    try:
        yield source
    finally:
        source.close()
