"""Procedural breast-MRI phantom series (four fat-saturated acquisitions) written as real DICOM.

`series` says what a phantom is and generates its pixels and labels, `anatomy` draws
the tissue, `dicom` writes the DICOM files, `cli` the data set writer.
"""

from mri_service.phantom.anatomy import CURVES
from mri_service.phantom.cli import build_parser, main
from mri_service.phantom.dicom import (
    PATIENT_ID,
    PATIENT_NAME,
    STUDY_DATE,
    dicom_files,
    file_names,
    write_dicom_series,
    write_series_zip,
)
from mri_service.phantom.series import (
    AXIAL,
    BITS_STORED,
    MAX_STORED,
    SIGNAL_SCALE,
    PhantomSeries,
    PhantomSpec,
    case_specs,
    generate_series,
    labels_json,
)

__all__ = [
    "AXIAL",
    "BITS_STORED",
    "CURVES",
    "MAX_STORED",
    "PATIENT_ID",
    "PATIENT_NAME",
    "SIGNAL_SCALE",
    "STUDY_DATE",
    "PhantomSeries",
    "PhantomSpec",
    "build_parser",
    "case_specs",
    "dicom_files",
    "file_names",
    "generate_series",
    "labels_json",
    "main",
    "write_dicom_series",
    "write_series_zip",
]
