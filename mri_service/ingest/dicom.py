"""Reads one chosen DICOM slice: a checked header and, in the same parse, its pixels.

`read_slice` parses a slice whole, checks it and decodes its pixels into model-sized
planes; the tag helpers here are shared with the header-only survey (`survey`). Only
the tags the service needs are parsed (pydicom's `specific_tags`), so patient names,
ids and dates are skipped unread and can reach no message or log. Files are
never read with `force=True`: without the "DICM" marker a file is refused, as pydicom
would otherwise "parse" any bytes into an empty dataset. The deflated transfer syntax
is refused because pydicom inflates its whole dataset in one unbounded call, which a
small file could turn into gigabytes.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Sequence
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
_MEDIA_CLASS_TAG = 0x00020002
DICM_AT = 128
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


@dataclass(frozen=True)
class DecodedSlice:
    """One decoded slice: its planes at each asked size, and a digest of its stored pixels."""

    planes: tuple[np.ndarray, ...]  # `domain.preprocess_slice` at each size asked, in order
    digest: bytes  # of the stored pixel values, to find phases that are the same images


def read_slice(
    name: str, data: bytes, limits: IngestLimits, sizes: Sequence[int]
) -> tuple[SliceHeader, DecodedSlice]:
    """Returns one slice's checked header and its planes, parsing the file once.

    Each plane is `domain.preprocess_slice` of the slice's values (rescale slope and
    intercept applied, MONOCHROME1 inverted) at one of `sizes`. Refuses, naming the
    entry, what `read_header` refuses and pixel data that does not really decode.
    """
    header, ds = _checked_header(name, data, limits)
    pixels, digest = _pixels(name, ds)
    if pixels.shape != (header.rows, header.columns):
        raise _refuse(
            f"the pixel data of entry {show(name)} is {pixels.shape[0]}x{pixels.shape[1]} "
            f"but its header declared {header.rows}x{header.columns}; export the series again",
            "SERIES_UNDECODABLE",
        )
    planes = tuple(domain.preprocess_slice(pixels, size) for size in sizes)
    return header, DecodedSlice(planes, digest)


def _checked_header(name: str, data: bytes, limits: IngestLimits) -> tuple[SliceHeader, Dataset]:
    if data[DICM_AT : DICM_AT + 4] != b"DICM":
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
    orientation = float_tags(name, ds, "ImageOrientationPatient", 6)
    position = float_tags(name, ds, "ImagePositionPatient", 3)
    if orientation is not None and np.linalg.norm(np.cross(orientation[:3], orientation[3:])) < 0.5:
        raise unreadable(name, "ImageOrientationPatient")
    along = None
    if orientation is not None and position is not None:
        along = domain.position_along_normal(orientation, position)
    return SliceHeader(rows, columns, along, orientation, instance_number_tag(name, ds)), ds


def decode_slice(name: str, data: bytes) -> np.ndarray:
    """Returns one slice's values as float32 (rows, columns): rescaled, MONOCHROME1 inverted.

    Refuses a file whose pixel data does not really decode (truncated, damaged, wrong length).
    """
    return _pixels(name, _parse(name, data, DECODE_TAGS))[0]


def _pixels(name: str, ds: Dataset) -> tuple[np.ndarray, bytes]:
    """Returns the slice's values and a digest of its stored pixels.

    pydicom masks bits above BitsStored and sign-extends signed data. MONOCHROME1 shows
    low values bright: its values are negated, which after the per-slice min-max scaling
    of `domain.normalise_slice` is exactly the inversion to MONOCHROME2.
    """
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
    digest = hashlib.blake2b(np.ascontiguousarray(stored).tobytes(), digest_size=16).digest()
    slope, intercept = _rescale(name, ds)
    pixels = stored.astype(np.float32)
    if slope != 1.0:
        pixels *= np.float32(slope)
    if intercept != 0.0:
        pixels += np.float32(intercept)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        np.negative(pixels, out=pixels)
    return pixels, digest


def file_meta(name: str, data: bytes) -> tuple[UID, str]:
    """Returns the file's transfer syntax and media storage class, from its group 2 alone.

    Refuses a file naming no transfer syntax, and the deflated syntax (see the module's doc).
    """
    stream = io.BytesIO(data)
    stream.seek(DICM_AT + 4)
    values: dict[int, object] = {}
    try:
        for element in data_element_generator(
            stream, False, True, stop_when=lambda tag, vr, length: tag.group != 2
        ):
            values[element.tag] = element.value
    except MemoryError:
        raise
    except Exception:
        values = {}
    syntax, media_class = (_text(values.get(t)) for t in (_TRANSFER_SYNTAX_TAG, _MEDIA_CLASS_TAG))
    if not syntax:
        raise _refuse(
            f"entry {show(name)} is not a valid DICOM file: its header names no transfer syntax",
            "SERIES_NOT_DICOM",
        )
    uid = UID(syntax)
    if uid == DeflatedExplicitVRLittleEndian:
        raise _refuse(
            f"entry {show(name)} uses the transfer syntax {syntax_name(uid)}, which is not "
            f"accepted; send {_ACCEPTED_SYNTAXES} DICOM",
            "SERIES_TRANSFER_SYNTAX",
        )
    return uid, media_class


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ") if isinstance(value, str) else ""


def _transfer_syntax(name: str, data: bytes) -> UID:
    """Returns the file's transfer syntax, refused unless a decoder for it is installed."""
    uid = file_meta(name, data)[0]
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


def unreadable(name: str, keyword: str) -> SeriesRejected:
    return _refuse(
        f"entry {show(name)} has an unreadable {keyword}; export the series again",
        "SERIES_BAD_HEADER",
    )


def tag_value(name: str, ds: Dataset, keyword: str) -> object:
    """Returns a tag's value, None when absent or empty; refuses a value that does not parse."""
    try:
        value = ds.get(keyword)
    except MemoryError:
        raise
    except Exception:
        raise unreadable(name, keyword) from None
    return None if value is None or value == "" else value


def integer_tag(name: str, ds: Dataset, keyword: str) -> int | None:
    value = tag_value(name, ds, keyword)
    if value is None:
        return None
    if not isinstance(value, int | float | str):
        raise unreadable(name, keyword)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise unreadable(name, keyword) from None


def float_tags(name: str, ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    value = tag_value(name, ds, keyword)
    if value is None:
        return None
    values = value if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    if not all(isinstance(v, int | float | str) for v in values):
        raise unreadable(name, keyword)
    try:
        numbers = tuple(float(v) for v in values)  # type: ignore[arg-type]  # checked above
    except ValueError:
        raise unreadable(name, keyword) from None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise unreadable(name, keyword)
    return numbers


def instance_number_tag(name: str, ds: Dataset) -> int | None:
    return integer_tag(name, ds, "InstanceNumber")


def _image_size(name: str, ds: Dataset, limits: IngestLimits) -> tuple[int, int]:
    rows, columns = integer_tag(name, ds, "Rows"), integer_tag(name, ds, "Columns")
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
    if (integer_tag(name, ds, "SamplesPerPixel") or 1) != 1:
        raise _refuse(
            f"entry {show(name)} is a colour image; MRI slices must be greyscale",
            "SERIES_BAD_HEADER",
        )
    if (integer_tag(name, ds, "NumberOfFrames") or 1) != 1:
        raise _one_frame(name)
    return rows, columns


def _one_frame(name: str) -> SeriesRejected:
    return _refuse(
        f"entry {show(name)} holds several frames; send one slice per DICOM file",
        "SERIES_BAD_HEADER",
    )


def _check_native_length(name: str, ds: Dataset, rows: int, columns: int) -> None:
    """Refuses uncompressed pixel data shorter than its header says; only a decode tells more."""
    bits = integer_tag(name, ds, "BitsAllocated")
    if bits is None or bits < 1:
        raise unreadable(name, "BitsAllocated")
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
        float_tags(name, ds, "RescaleSlope", 1),
        float_tags(name, ds, "RescaleIntercept", 1),
    )
    return (slope[0] if slope else 1.0), (intercept[0] if intercept else 0.0)
