"""Builders that re-tag and re-package a phantom DCE series as real systems export studies."""

# Every builder starts from the phantom's BreastWise output (pre/, 1st_pass/, 2nd_pass/,
# 3rd_pass/ with equal file names, one SeriesInstanceUID per folder), reads each file back
# with pydicom, changes tags or pixels and writes the files again: nothing is written from
# nothing. Each returns the path of the zip it wrote. New UIDs are derived from the old
# ones, and zip timestamps are fixed, so the same input always gives the same zip.
#
# Layouts:
#   write_tcia_zip               NBIA Data Retriever download of Duke-Breast-Cancer-MRI
#   write_dicomdir_zip           CD export: DICOMDIR + PT000000/ST000000/SE000000/IM000000
#   write_pacs_export_zip        flat DATA/0001/IM000001 (or UID names), mixed, with clutter
#   write_ge_multiphase_zip      one GE series, phases by TemporalPositionIdentifier
#   write_siemens_multiphase_zip one Siemens series, phases by AcquisitionNumber
#   write_encoded_zip            BreastWise zip, other pixel encodings of the same meaning
#   write_refusal_zip            BreastWise or TCIA zip with exactly one thing wrong

from mri_service.tests.layouts.base import (
    CANARY,
    CONTENT_DELAY_S,
    DEFAULT_FAULT_PHASE,
    DUKE,
    DUKE_COLLECTION,
    DUKE_DOI,
    DUKE_PATIENT,
    DYNAMIC,
    DYNAMIC_OFFSETS_S,
    FOURTH_PASS,
    GE,
    GE_MULTIPHASE_DESCRIPTION,
    LOCALIZER_OFFSET_S,
    OTHER_PATIENT,
    RESAMPLE_FACTOR,
    RESCALE_GAIN,
    RESCALE_INTERCEPT,
    RESCALE_OFFSET,
    RESCALE_SLOPE,
    SIEMENS,
    SIEMENS_MULTIPHASE_DESCRIPTION,
    SIEMENS_SAME_NAME,
    SLICE_SHIFT_MM,
    SPACING_FACTOR,
    STUDY_OFFSET_S,
    T1_OFFSET_S,
    T1_SCALE,
    TCIA_METADATA_COLUMNS,
    TILT_DEGREES,
    TRANSFER_SYNTAXES,
    Encoding,
    Fault,
    Patient,
    Phases,
    Protocol,
    Source,
)
from mri_service.tests.layouts.encodings import (
    encode_phases,
    write_encoded_zip,
)
from mri_service.tests.layouts.exports import (
    write_dicomdir_zip,
    write_pacs_export_zip,
)
from mri_service.tests.layouts.multiphase import (
    write_ge_multiphase_zip,
    write_siemens_multiphase_zip,
)
from mri_service.tests.layouts.refusals import (
    write_refusal_zip,
)
from mri_service.tests.layouts.tags import (
    _normal,
    all_datasets,
    along_normal,
    apply_patient,
    breastwise_entries,
    clock,
    encode,
    load_phases,
    write_breastwise_zip,
    write_zip,
)
from mri_service.tests.layouts.tcia import (
    nbia_file_names,
    write_tcia_zip,
)

__all__ = [
    "CANARY",
    "CONTENT_DELAY_S",
    "DEFAULT_FAULT_PHASE",
    "DUKE",
    "DUKE_COLLECTION",
    "DUKE_DOI",
    "DUKE_PATIENT",
    "DYNAMIC",
    "DYNAMIC_OFFSETS_S",
    "FOURTH_PASS",
    "GE",
    "GE_MULTIPHASE_DESCRIPTION",
    "LOCALIZER_OFFSET_S",
    "OTHER_PATIENT",
    "RESAMPLE_FACTOR",
    "RESCALE_GAIN",
    "RESCALE_INTERCEPT",
    "RESCALE_OFFSET",
    "RESCALE_SLOPE",
    "SIEMENS",
    "SIEMENS_MULTIPHASE_DESCRIPTION",
    "SIEMENS_SAME_NAME",
    "SLICE_SHIFT_MM",
    "SPACING_FACTOR",
    "STUDY_OFFSET_S",
    "T1_OFFSET_S",
    "T1_SCALE",
    "TCIA_METADATA_COLUMNS",
    "TILT_DEGREES",
    "TRANSFER_SYNTAXES",
    "Encoding",
    "Fault",
    "Patient",
    "Phases",
    "Protocol",
    "Source",
    "_normal",
    "all_datasets",
    "along_normal",
    "apply_patient",
    "breastwise_entries",
    "clock",
    "encode",
    "encode_phases",
    "load_phases",
    "nbia_file_names",
    "write_breastwise_zip",
    "write_dicomdir_zip",
    "write_encoded_zip",
    "write_ge_multiphase_zip",
    "write_pacs_export_zip",
    "write_refusal_zip",
    "write_siemens_multiphase_zip",
    "write_tcia_zip",
    "write_zip",
]
