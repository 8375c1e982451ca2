"""The caps an uploaded series must stay under; every one has a setting (MRI_*)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class IngestLimits:
    """Bounds on an uploaded series zip, checked while it arrives and before any model work.

    The defaults admit a 4-phase series of 1,024 slices of 1024x1024 16-bit pixels and
    refuse anything that would cost more to unpack than such a series.
    """

    max_upload_bytes: int = 2 * GIB  # the zip as uploaded
    max_entries: int = 4 * 1024 + 64  # every entry of the zip, folders and ignored files included
    max_uncompressed_bytes: int = 8 * GIB  # the sum of every entry's bytes as actually read
    max_entry_bytes: int = 64 * MIB  # one DICOM file as actually read
    max_compression_ratio: float = 200.0  # uncompressed / compressed size of one entry
    min_slices: int = 1  # per phase
    max_slices: int = 1024  # per phase
    max_image_side: int = 2048  # declared Rows and Columns
