"""Series ingestion: spool the upload, check the zip and every DICOM header, load the planes.

The steps, each refusing with SeriesRejected (INVALID_ARGUMENT) and a message that
names the offending entry: `spooled_upload` writes the stream to a temporary file
under a byte cap; `open_series` checks the archive (names, links, encryption, entry
count, sizes and compression ratios as actually read, nested archives), the folder
layout and every file's DICOM header, and orders the slices anatomically;
`load_series` does all of that in one pass over the entries and also decodes and
preprocesses each slice as it is read, returning only the model-sized planes.
"""

from mri_service.ingest.limits import IngestLimits
from mri_service.ingest.series import (
    PhaseIndex,
    SeriesIndex,
    load_series,
    open_series,
)
from mri_service.ingest.spool import spooled_upload

__all__ = [
    "IngestLimits",
    "PhaseIndex",
    "SeriesIndex",
    "load_series",
    "open_series",
    "spooled_upload",
]
