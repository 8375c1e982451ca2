"""Study ingestion: spool the upload, survey every header, select and check the DCE phases, load.

The steps, each refusing with SeriesRejected (INVALID_ARGUMENT) and a message that
names the offending entry, series or attribute: `spooled_upload` writes the stream to a
temporary file under a byte cap; `open_study` checks the archive (names, links,
encryption, entry count, sizes and compression ratios as actually read, nested
archives), reads the header of every file, skips what is not part of the study, selects
the dynamic (DCE) phases and checks that they describe one volume; `load_study` does
that and then decodes the chosen slices into model-sized planes.
"""

from mri_service.ingest.limits import IngestLimits
from mri_service.ingest.selection import SelectionRules
from mri_service.ingest.series import (
    LoadedStudy,
    inspect_study,
    load_series,
    load_study,
    open_study,
)
from mri_service.ingest.spool import spooled_upload
from mri_service.ingest.study import InstanceHeader, Phase, SkippedFile, Study, UnusedSeries

__all__ = [
    "IngestLimits",
    "InstanceHeader",
    "LoadedStudy",
    "Phase",
    "SelectionRules",
    "SkippedFile",
    "Study",
    "UnusedSeries",
    "inspect_study",
    "load_series",
    "load_study",
    "open_study",
    "spooled_upload",
]
