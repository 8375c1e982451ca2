"""Reads one DICOM slice from its bytes: a checked header and, in the same parse, its pixels.

Only the tags the service needs are parsed (pydicom's `specific_tags`), so patient
names, ids and dates are skipped unread and can reach no message or log. Files are
never read with `force=True`: without the "DICM" marker a file is refused, as pydicom
would otherwise "parse" any bytes into an empty dataset. The deflated transfer syntax
is refused because pydicom inflates its whole dataset in one unbounded call, which a
small file could turn into gigabytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from mri_service import domain
from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import show
from mri_service.ingest.limits import IngestLimits

_PIXEL_TAGS = [
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
    "PixelData",
]
HEADER_TAGS = [*_PIXEL_TAGS, "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber"]
DECODE_TAGS = _PIXEL_TAGS
_TRANSFER_SYNTAX_TAG = 0x00020010
_DICM_AT = 128
# Syntaxes newer than the installed pydicom, named so a refusal says what they are.
_SYNTAX_NAMES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}
_ACCEPTED_SYNTAXES = "uncompressed, RLE, JPEG, JPEG-LS or JPEG 2000"


@dataclass(frozen=True)
class SliceHeader:
    """What ordering and validation need from one slice; no pixels, no patient data."""

    rows: int
    columns: int
    position: float | None  # along the slice normal, None without position and orientation
    orientation: tuple[float, ...] | None  # ImageOrientationPatient
    instance_number: int | None


def _refuse(message: str, reason: str) -> SeriesRejected:
    return SeriesRejected(message, reason=reason)


def syntax_name(uid: str) -> str:
    """Returns a transfer syntax's name with its UID, for messages."""
    name = _SYNTAX_NAMES.get(uid) or UID(uid).name
    return show(uid) if name == uid else f"{name} ({uid})"


def read_header(name: str, data: bytes, limits: IngestLimits) -> SliceHeader:
    """Returns one slice's checked header, or refuses the file naming the entry.

    Checks that the file is DICOM, its transfer syntax decodes here, it holds one
    greyscale frame of a sane size and pixel data at least as long as declared.
    """
    return _checked_header(name, data, limits)[0]


def read_slice(
    name: str, data: bytes, limits: IngestLimits, input_size: int
) -> tuple[SliceHeader, np.ndarray]:
    """Returns one slice's checked header and its model-sized plane, parsing the file once.

    The plane is `domain.preprocess_slice` of the rescaled pixels. Refuses, naming the
    entry, what `read_header` refuses and pixel data that does not really decode.
    """
    header, ds = _checked_header(name, data, limits)
    pixels = _pixels(name, ds)
    if pixels.shape != (header.rows, header.columns):
        raise _refuse(
            f"the pixel data of entry {show(name)} is {pixels.shape[0]}x{pixels.shape[1]} "
            f"but its header declared {header.rows}x{header.columns}; export the series again",
            "SERIES_UNDECODABLE",
        )
    return header, domain.preprocess_slice(pixels, input_size)


def _checked_header(name: str, data: bytes, limits: IngestLimits) -> tuple[SliceHeader, Dataset]:
    if data[_DICM_AT : _DICM_AT + 4] != b"DICM":
        raise _refuse(
            f"entry {show(name)} is not a DICOM file (it lacks the DICM marker); the phase "
            "folders may hold only DICOM files",
            "SERIES_NOT_DICOM",
        )
    syntax = _transfer_syntax(name, data)
    ds = _parse(name, data, HEADER_TAGS)
    if "PixelData" not in ds:
        # pydicom also drops the whole dataset of a file cut inside compressed pixel data.
        raise _refuse(
            f"entry {show(name)} has no pixel data, or it is truncated; send complete image files",
            "SERIES_NO_PIXELS",
        )
    rows, columns = _image_size(name, ds, limits)
    if not syntax.is_compressed:
        _check_native_length(name, ds, rows, columns)
    _rescale(name, ds)
    orientation = _floats(name, ds, "ImageOrientationPatient", 6)
    position = _floats(name, ds, "ImagePositionPatient", 3)
    if orientation is not None and np.linalg.norm(np.cross(orientation[:3], orientation[3:])) < 0.5:
        raise _unreadable(name, "ImageOrientationPatient")
    along = None
    if orientation is not None and position is not None:
        along = domain.position_along_normal(orientation, position)
    return SliceHeader(rows, columns, along, orientation, _instance_number(name, ds)), ds


def decode_slice(name: str, data: bytes) -> np.ndarray:
    """Returns one slice's pixels as float32 (rows, columns), rescale slope and intercept applied.

    Refuses a file whose pixel data does not really decode (truncated, damaged, wrong length).
    """
    return _pixels(name, _parse(name, data, DECODE_TAGS))


def _pixels(name: str, ds: Dataset) -> np.ndarray:
    try:
        stored = ds.pixel_array
    except MemoryError:
        raise
    except Exception:
        # Decoders raise many types on damaged data; the cause is the file either way.
        raise _refuse(
            f"the pixel data of entry {show(name)} does not decode: the file is truncated "
            "or damaged; export the series again",
            "SERIES_UNDECODABLE",
        ) from None
    if stored.ndim != 2:
        raise _one_frame(name)
    slope, intercept = _rescale(name, ds)
    pixels = stored.astype(np.float32)
    if slope != 1.0:
        pixels *= np.float32(slope)
    if intercept != 0.0:
        pixels += np.float32(intercept)
    return pixels


def _transfer_syntax(name: str, data: bytes) -> UID:
    """Returns the file's transfer syntax, refused unless a decoder for it is installed."""
    stream = io.BytesIO(data)
    stream.seek(_DICM_AT + 4)
    value: object = None
    try:
        for element in data_element_generator(
            stream, False, True, stop_when=lambda tag, vr, length: tag.group != 2
        ):
            if element.tag == _TRANSFER_SYNTAX_TAG:
                value = element.value
    except MemoryError:
        raise
    except Exception:
        value = None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    uid = UID(value.strip("\x00 ")) if isinstance(value, str) else None
    if not uid:
        raise _refuse(
            f"entry {show(name)} is not a valid DICOM file: its header names no transfer syntax",
            "SERIES_NOT_DICOM",
        )
    if uid == DeflatedExplicitVRLittleEndian:
        raise _refuse(
            f"entry {show(name)} uses the transfer syntax {syntax_name(uid)}, which is not "
            f"accepted; send {_ACCEPTED_SYNTAXES} DICOM",
            "SERIES_TRANSFER_SYNTAX",
        )
    try:
        available = get_decoder(uid).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise _refuse(
            f"entry {show(name)} uses the transfer syntax {syntax_name(uid)}, which has no "
            f"decoder installed; send {_ACCEPTED_SYNTAXES} DICOM",
            "SERIES_TRANSFER_SYNTAX",
        )
    return uid


def _parse(name: str, data: bytes, tags: list[str]) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), specific_tags=list(tags))
    except MemoryError:
        raise
    except Exception:
        # pydicom raises many types on malformed input; the cause is the file either way.
        raise _refuse(
            f"entry {show(name)} is not a readable DICOM file; export the series again",
            "SERIES_NOT_DICOM",
        ) from None


def _unreadable(name: str, keyword: str) -> SeriesRejected:
    return _refuse(
        f"entry {show(name)} has an unreadable {keyword}; export the series again",
        "SERIES_BAD_HEADER",
    )


def _get(name: str, ds: Dataset, keyword: str) -> object:
    """Returns a tag's value, None when absent or empty; refuses a value that does not parse."""
    try:
        value = ds.get(keyword)
    except MemoryError:
        raise
    except Exception:
        raise _unreadable(name, keyword) from None
    return None if value is None or value == "" else value


def _integer(name: str, ds: Dataset, keyword: str) -> int | None:
    value = _get(name, ds, keyword)
    if value is None:
        return None
    if not isinstance(value, int | float | str):
        raise _unreadable(name, keyword)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise _unreadable(name, keyword) from None


def _floats(name: str, ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    value = _get(name, ds, keyword)
    if value is None:
        return None
    values = value if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    if not all(isinstance(v, int | float | str) for v in values):
        raise _unreadable(name, keyword)
    try:
        numbers = tuple(float(v) for v in values)  # type: ignore[arg-type]  # checked above
    except ValueError:
        raise _unreadable(name, keyword) from None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise _unreadable(name, keyword)
    return numbers


def _instance_number(name: str, ds: Dataset) -> int | None:
    return _integer(name, ds, "InstanceNumber")


def _image_size(name: str, ds: Dataset, limits: IngestLimits) -> tuple[int, int]:
    rows, columns = _integer(name, ds, "Rows"), _integer(name, ds, "Columns")
    if rows is None or columns is None or rows < 1 or columns < 1:
        raise _refuse(
            f"entry {show(name)} declares no image size (Rows and Columns); "
            "export the series again",
            "SERIES_BAD_HEADER",
        )
    if max(rows, columns) > limits.max_image_side:
        raise _refuse(
            f"entry {show(name)} declares {rows}x{columns} pixels; at most "
            f"{limits.max_image_side} pixels a side are accepted",
            "SERIES_IMAGE_TOO_LARGE",
        )
    if (_integer(name, ds, "SamplesPerPixel") or 1) != 1:
        raise _refuse(
            f"entry {show(name)} is a colour image; MRI slices must be greyscale",
            "SERIES_BAD_HEADER",
        )
    if (_integer(name, ds, "NumberOfFrames") or 1) != 1:
        raise _one_frame(name)
    return rows, columns


def _one_frame(name: str) -> SeriesRejected:
    return _refuse(
        f"entry {show(name)} holds several frames; send one slice per DICOM file",
        "SERIES_BAD_HEADER",
    )


def _check_native_length(name: str, ds: Dataset, rows: int, columns: int) -> None:
    """Refuses uncompressed pixel data shorter than its header says; only a decode tells more."""
    bits = _integer(name, ds, "BitsAllocated")
    if bits is None or bits < 1:
        raise _unreadable(name, "BitsAllocated")
    expected = (rows * columns * bits + 7) // 8
    if len(ds.PixelData) < expected:
        raise _refuse(
            f"the pixel data of entry {show(name)} is truncated ({len(ds.PixelData)} of "
            f"{expected} bytes); export the series again",
            "SERIES_UNDECODABLE",
        )


def _rescale(name: str, ds: Dataset) -> tuple[float, float]:
    """Returns (slope, intercept), 1 and 0 where absent; refuses values that are not finite."""
    slope, intercept = (
        _floats(name, ds, "RescaleSlope", 1),
        _floats(name, ds, "RescaleIntercept", 1),
    )
    return (slope[0] if slope else 1.0), (intercept[0] if intercept else 0.0)
