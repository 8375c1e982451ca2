"""Builders of hostile and malformed series zips for tests: unsafe entries, bombs, bad DICOM.

Each builder starts from real bytes (usually a valid phantom series zip) and changes
one thing, so a test can show that exactly that thing is refused. Header patches edit
the zip's bytes directly, because zipfile will not write lies on purpose.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import warnings
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from mri_service.ingest import IngestLimits, load_series, spooled_upload
from mri_service.phantom import PhantomSpec, generate_series, write_series_zip

_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_END = b"PK\x05\x06"
# Field offsets inside a central directory record and a local file header.
_CENTRAL_FIELDS = {"flags": 8, "method": 10, "compress_size": 20, "file_size": 24}
_LOCAL_FIELDS = {"flags": 6, "method": 8, "compress_size": 18, "file_size": 22}
_FORMATS = {"flags": "<H", "method": "<H", "compress_size": "<L", "file_size": "<L"}

Entries = Mapping[str, bytes]


def read_entries(zip_path: Path) -> dict[str, bytes]:
    """Returns name -> bytes of every file entry, in the zip's order."""
    with zipfile.ZipFile(zip_path) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


def write_zip(
    zip_path: Path,
    entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Writes entries as given, unsafe names and duplicates included, and returns zip_path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(zip_path, "w", compression) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return zip_path


def rewrite(
    source: Path,
    target: Path,
    *,
    change: Mapping[str, bytes] | None = None,
    remove: Callable[[str], bool] = lambda name: False,
    add: Iterable[tuple[str | zipfile.ZipInfo, bytes]] = (),
) -> Path:
    """Writes a copy of source with entries changed, removed and added, and returns target."""
    change = change or {}
    kept = [
        (name, change.get(name, data))
        for name, data in read_entries(source).items()
        if not remove(name)
    ]
    return write_zip(target, [*kept, *add])


def symlink_entry(name: str, target: str = "/etc/passwd") -> tuple[zipfile.ZipInfo, bytes]:
    """Returns a zip entry that unpacks as a symbolic link to target."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the mode bits below mean what they say
    info.external_attr = 0o120777 << 16
    return info, target.encode()


def _records(data: bytes) -> dict[str, tuple[int, int]]:
    """Returns name -> (central record offset, local header offset)."""
    end = data.rfind(_END)
    count, _, offset = struct.unpack_from("<HLL", data, end + 10)
    records: dict[str, tuple[int, int]] = {}
    for _ in range(count):
        assert data[offset : offset + 4] == _CENTRAL
        name_length, extra_length, comment_length = struct.unpack_from("<3H", data, offset + 28)
        name = data[offset + 46 : offset + 46 + name_length].decode("utf-8")
        (local,) = struct.unpack_from("<L", data, offset + 42)
        records[name] = (offset, local)
        offset += 46 + name_length + extra_length + comment_length
    return records


def patch_header(zip_path: Path, name: str, **fields: int) -> Path:
    """Overwrites header fields (flags, method, compress_size, file_size) of one entry.

    Both copies are patched, the central directory's and the local header's, as a
    crafted archive would.
    """
    data = bytearray(zip_path.read_bytes())
    central, local = _records(bytes(data))[name]
    for field, value in fields.items():
        struct.pack_into(_FORMATS[field], data, central + _CENTRAL_FIELDS[field], value)
        struct.pack_into(_FORMATS[field], data, local + _LOCAL_FIELDS[field], value)
    zip_path.write_bytes(bytes(data))
    return zip_path


def mark_encrypted(zip_path: Path, name: str) -> Path:
    """Sets the 'encrypted' flag of one entry, as a password-protected zip has."""
    central, _ = _records(zip_path.read_bytes())[name]
    (flags,) = struct.unpack_from("<H", zip_path.read_bytes(), central + 8)
    return patch_header(zip_path, name, flags=flags | 0x1)


def corrupt_entry_data(zip_path: Path, name: str) -> Path:
    """Flips bytes in the middle of one entry's compressed data."""
    data = bytearray(zip_path.read_bytes())
    central, local = _records(bytes(data))[name]
    (compressed,) = struct.unpack_from("<L", data, central + 20)
    name_length, extra_length = struct.unpack_from("<2H", data, local + 26)
    start = local + 30 + name_length + extra_length + compressed // 2
    for at in range(start, start + 16):
        data[at] ^= 0xA5
    zip_path.write_bytes(bytes(data))
    return zip_path


def truncate(zip_path: Path, keep: float = 0.6) -> Path:
    """Cuts the file to a share of its length, as an interrupted upload would."""
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: int(len(data) * keep)])
    return zip_path


def zip_bytes(entries: Entries) -> bytes:
    """Returns a small zip archive's bytes, to nest inside another."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """Returns data gzip-compressed."""
    return gzip.compress(data, mtime=0)


def tar_bytes(entries: Entries) -> bytes:
    """Returns an uncompressed tar archive's bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def mutate_dicom(data: bytes, change: Callable[[Dataset], None]) -> bytes:
    """Returns a DICOM file's bytes after change(dataset), saved as it was encoded."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    change(dataset)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def phantom_zip(
    zip_path: Path, *, slices: int = 4, size: int = 64, wrap_folder: str | None = "case", **kw: Any
) -> Path:
    """Writes a valid phantom series zip (tiny by default) and returns its path."""
    series = generate_series(PhantomSpec(slices=slices, size=size, lesion=True, seed=1))
    return write_series_zip(series, zip_path, wrap_folder=wrap_folder, **kw)


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def ingest_zip(
    zip_path: Path, spool_dir: Path, limits: IngestLimits, input_size: int = 16
) -> dict[str, np.ndarray]:
    """Returns the planes of a zip sent the service's way: chunks, spool, load_series."""
    chunks = _chunks(zip_path.read_bytes(), 16 * 1024)
    async with spooled_upload(chunks, spool_dir=spool_dir, limits=limits) as spooled:
        return load_series(spooled, input_size, limits)
