"""The survey of an upload's files: what each is, from its header alone, pixel data unread.

`survey_file` reads a file's first bytes only (the header, before the pixel data, more
only when a header is longer than the first read) and says what it is: an image with
its identity, geometry and timing, or a file to skip (a DICOMDIR, a file that is not
DICOM). PatientID becomes a one-way key at once; PatientID, PatientName and
PatientBirthDate also go to the upload's Redactor, which keeps them out of every message
and reported path, and nowhere else.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import show
from mri_service.ingest.dicom import (
    DICM_AT,
    PIXEL_DESCRIPTION_TAGS,
    FileMeta,
    Head,
    file_meta,
    float_tags,
    instance_number_tag,
    integer_tag,
    tag_value,
    unreadable,
)
from mri_service.ingest.limits import IngestLimits
from mri_service.ingest.redact import Redactor
from mri_service.ingest.study import MEDIA_STORAGE_DIRECTORY, InstanceHeader, SkippedFile

# What the survey reads of every file: identity, geometry and timing. PatientID to tell
# patients apart (hashed at once); the patient's identifiers for the Redactor alone.
SURVEY_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "Modality", "StudyInstanceUID", "SeriesInstanceUID",
    "SeriesNumber", "SeriesDescription", "PatientID", "FrameOfReferenceUID", "ImageType",
    "Rows", "Columns", "NumberOfFrames", "PixelSpacing", "ImageOrientationPatient",
    "ImagePositionPatient", "InstanceNumber", "AcquisitionNumber",
    "TemporalPositionIdentifier", "TriggerTime", "AcquisitionTime", "ContentTime",
    "SeriesTime", "PatientName", "PatientBirthDate",
    *PIXEL_DESCRIPTION_TAGS,
]  # fmt: skip
_SURVEY_TAG_SET: list[BaseTag | int] = [Tag(keyword) for keyword in SURVEY_TAGS]
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # integer, float, double
_IDENTIFIERS = ("PatientID", "PatientName", "PatientBirthDate")
# The first read of a file for its header; most MR headers (private tags included) fit.
_HEAD_BYTES = 16 * 1024
_PIXEL_DATA_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # little, big endian
# Names that promise a DICOM file: one of these without the DICM marker is refused, not skipped.
_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")


@dataclass(frozen=True)
class Surveyed:
    """A DICOM image the survey found: its header, and its parsed head for the decode."""

    header: InstanceHeader
    head: Head


def survey_file(
    name: str, read: Callable[[int], bytes], limits: IngestLimits, redactor: Redactor
) -> Surveyed | SkippedFile:
    """Returns what one file of an upload is, from its header alone (no pixel data read).

    `read(n)` returns the file's first n bytes (fewer when the file is shorter). A file
    without the DICM marker is skipped, unless its name promises DICOM (`.dcm`); so is a
    DICOMDIR. A DICOM file that does not parse is refused: it may belong to the study.
    The parsed head (pixel description, file meta, where the pixel data starts) comes
    with the header, so that decoding a chosen slice parses only its pixel data.

    Raises:
        SeriesRejected: the message names the entry.
    """
    if name.rsplit("/", 1)[-1].upper() == "DICOMDIR":
        return SkippedFile(name, "a DICOMDIR (the index of a CD or PACS export)")
    size = _HEAD_BYTES
    data = read(size)
    if data[DICM_AT : DICM_AT + 4] != b"DICM":
        if name.lower().endswith(_DICOM_SUFFIXES):
            raise SeriesRejected(
                f"entry {show(name)} is not a DICOM file (it lacks the DICM marker), though its "
                "name says it is; export the study again",
                reason="SERIES_NOT_DICOM",
            )
        return SkippedFile(name, "not a DICOM file")
    meta = file_meta(name, data)
    if meta.media_class == MEDIA_STORAGE_DIRECTORY:
        return SkippedFile(name, "a DICOMDIR (the index of a CD or PACS export)")
    while True:
        complete = len(data) < size or size > limits.max_entry_bytes
        head = _parse_head(name, data, meta, complete)
        if head is not None:
            header = _instance_header(name, head.dataset)
            redactor.add(*(_string(name, head.dataset, k) for k in _IDENTIFIERS))
            for keyword in _IDENTIFIERS:  # read for the key and the redactor; kept nowhere
                if keyword in head.dataset:
                    del head.dataset[keyword]
            return Surveyed(header, head)
        size *= 4
        data = read(size)


def _parse_head(name: str, data: bytes, meta: FileMeta, complete: bool) -> Head | None:
    """Returns the header parsed up to the pixel data, or None when more bytes are needed.

    The dataset after group 2 is read as `file_meta` found it encoded, with pydicom's
    element reader: `dcmread` would parse and validate the file meta a second time, which
    costs as much as the rest of a survey.
    """
    implicit, little = _encoding(meta.syntax)
    buffer = io.BytesIO(data)
    buffer.seek(meta.end)
    try:
        ds = read_dataset(
            buffer, implicit, little, stop_when=_at_pixel_data, specific_tags=_SURVEY_TAG_SET
        )
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = meta.syntax
        ds.set_original_encoding(implicit, little, ds._character_set)
    except MemoryError:
        raise
    except Exception:
        if not complete:
            return None
        raise SeriesRejected(
            f"entry {show(name)} is not a readable DICOM file; export the study again",
            reason="SERIES_NOT_DICOM",
        ) from None
    at = buffer.tell()
    if data[at : at + 4] in _PIXEL_DATA_TAG_BYTES:
        return Head(ds, at)
    return Head(ds, None) if complete else None


def _encoding(syntax: UID) -> tuple[bool, bool]:
    """Returns (implicit VR, little endian) of the dataset encoded in syntax."""
    try:
        return syntax.is_implicit_VR, syntax.is_little_endian
    except ValueError:  # a syntax newer than pydicom: every compressed one is explicit LE
        return False, True


def _at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_TAGS


def _instance_header(name: str, ds: Dataset) -> InstanceHeader:
    patient = _string(name, ds, "PatientID")
    orientation = float_tags(name, ds, "ImageOrientationPatient", 6)
    if orientation is not None and np.linalg.norm(np.cross(orientation[:3], orientation[3:])) < 0.5:
        raise unreadable(name, "ImageOrientationPatient")
    return InstanceHeader(
        entry=name,
        sop_class_uid=_string(name, ds, "SOPClassUID"),
        sop_instance_uid=_string(name, ds, "SOPInstanceUID"),
        modality=_string(name, ds, "Modality").upper(),
        study_uid=_string(name, ds, "StudyInstanceUID"),
        series_uid=_string(name, ds, "SeriesInstanceUID"),
        series_number=integer_tag(name, ds, "SeriesNumber"),
        series_description=_string(name, ds, "SeriesDescription"),
        patient_key=hashlib.sha256(patient.encode()).hexdigest()[:16] if patient else "",
        frame_of_reference_uid=_string(name, ds, "FrameOfReferenceUID"),
        image_type=tuple(v.upper() for v in _strings(name, ds, "ImageType")),
        rows=integer_tag(name, ds, "Rows"),
        columns=integer_tag(name, ds, "Columns"),
        frames=integer_tag(name, ds, "NumberOfFrames") or 1,
        pixel_spacing=float_tags(name, ds, "PixelSpacing", 2),
        orientation=orientation,
        position=float_tags(name, ds, "ImagePositionPatient", 3),
        instance_number=instance_number_tag(name, ds),
        acquisition_number=integer_tag(name, ds, "AcquisitionNumber"),
        temporal_position=integer_tag(name, ds, "TemporalPositionIdentifier"),
        trigger_time_ms=_number(name, ds, "TriggerTime"),
        acquisition_time_s=_time(name, ds, "AcquisitionTime"),
        content_time_s=_time(name, ds, "ContentTime"),
        series_time_s=_time(name, ds, "SeriesTime"),
    )


def _string(name: str, ds: Dataset, keyword: str) -> str:
    value = tag_value(name, ds, keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):  # not PersonName: it iterates characters
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def _strings(name: str, ds: Dataset, keyword: str) -> tuple[str, ...]:
    value = tag_value(name, ds, keyword)
    if value is None:
        return ()
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    return tuple(str(v).strip() for v in values)


def _number(name: str, ds: Dataset, keyword: str) -> float | None:
    numbers = float_tags(name, ds, keyword, 1)
    return numbers[0] if numbers else None


def _time(name: str, ds: Dataset, keyword: str) -> float | None:
    """Returns a TM value as seconds since midnight; None when absent or unreadable.

    Times only order phases; a malformed one is treated as absent rather than refusing
    a file whose images are fine.
    """
    text = _string(name, ds, keyword).replace(":", "")
    digits, _, fraction = text.partition(".")
    if not digits.isdigit() or len(digits) % 2 or not 2 <= len(digits) <= 6:
        return None
    hours, minutes, seconds = (int(digits[i : i + 2] or 0) for i in (0, 2, 4))
    whole = hours * 3600 + minutes * 60 + seconds
    return whole + float(f"0.{fraction}") if fraction.isdigit() else float(whole)
