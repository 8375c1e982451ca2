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

import functools
import io
import logging
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator, read_dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from mri_service import domain
from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import show
from mri_service.ingest.limits import IngestLimits

logger = logging.getLogger(__name__)

# What decoding needs besides the pixel data itself; the survey reads these from the head.
PIXEL_DESCRIPTION_TAGS = [
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
]
DECODE_TAGS = [*PIXEL_DESCRIPTION_TAGS, "PixelData"]
# The patient and study modules a derived object (the SR and KOS of a result) copies from
# its source images, so that a PACS files it with the study it describes.
STUDY_ATTRIBUTE_TAGS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "SpecificCharacterSet",
]
_TRANSFER_SYNTAX_TAG = 0x00020010
_MEDIA_CLASS_TAG = 0x00020002
_PIXEL_DATA_TAG = Tag(0x7FE00010)
# Value representations that are plain ASCII text, read without pydicom's conversion.
_TEXT_VRS = frozenset({"UI", "CS", "IS", "DS", "TM", "DA"})
DICM_AT = 128
# Syntaxes newer than the installed pydicom, named so a refusal says what they are.
_SYNTAX_NAMES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}
_ACCEPTED_SYNTAXES = "uncompressed, RLE, JPEG, JPEG-LS or JPEG 2000"


def _refuse(message: str, reason: str) -> SeriesRejected:
    return SeriesRejected(message, reason=reason)


def syntax_name(uid: str) -> str:
    """Returns a transfer syntax's name with its UID, for messages."""
    name = _SYNTAX_NAMES.get(uid) or UID(uid).name
    return show(uid) if name == uid else f"{name} ({uid})"


@dataclass(frozen=True)
class Head:
    """A file's header as the survey parsed it, up to where its pixel data starts."""

    dataset: Dataset  # file meta and PIXEL_DESCRIPTION_TAGS among the survey's tags
    pixel_offset: int | None  # of the PixelData element; None when the header has none


@dataclass(frozen=True)
class DecodedSlice:
    """One decoded slice: its planes at each asked size, and a digest of its stored pixels."""

    planes: tuple[np.ndarray, ...]  # `domain.preprocess_slice` at each size asked, in order
    digest: int  # CRC-32 of the stored pixel values, to find phases that are the same images


def read_slice(
    name: str, data: bytes, limits: IngestLimits, sizes: Sequence[int], head: Head | None = None
) -> DecodedSlice:
    """Returns one chosen slice's planes.

    Each plane is `domain.preprocess_slice` of the slice's values (rescale slope and
    intercept applied, MONOCHROME1 inverted) at one of `sizes`. With the survey's `head`
    only the pixel data element is parsed (the header was, once, by the survey); without,
    the file's pixel tags are. Checks what decoding needs (a decoder for the transfer
    syntax, one greyscale frame of a sane size, pixel data at least as long as declared)
    and refuses, naming the entry, pixel data that does not really decode.
    """
    ds, rows, columns = _checked_image(name, data, limits, head)
    pixels, digest = _pixels(name, ds)
    if pixels.shape != (rows, columns):
        raise _refuse(
            f"the pixel data of entry {show(name)} is {pixels.shape[0]}x{pixels.shape[1]} "
            f"but its header declared {rows}x{columns}; export the series again",
            "SERIES_UNDECODABLE",
        )
    planes = tuple(domain.preprocess_slice(pixels, size) for size in sizes)
    return DecodedSlice(planes, digest)


def _checked_image(
    name: str, data: bytes, limits: IngestLimits, head: Head | None
) -> tuple[Dataset, int, int]:
    if data[DICM_AT : DICM_AT + 4] != b"DICM":
        raise _refuse(
            f"entry {show(name)} is not a DICOM file (it lacks the DICM marker); the phase "
            "folders may hold only DICOM files",
            "SERIES_NOT_DICOM",
        )
    syntax = _transfer_syntax(name, data)
    ds = _parse(name, data, DECODE_TAGS) if head is None else _with_pixel_data(name, data, head)
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
    return ds, rows, columns


def study_attributes(name: str, data: bytes) -> Dataset:
    """Returns a file's patient and study modules (`STUDY_ATTRIBUTE_TAGS`), nothing else.

    The survey keeps no patient identifier; this is read only when a result must go back
    to a PACS as DICOM, and lives only as long as the call that builds it.
    """
    ds = _parse(name, data, STUDY_ATTRIBUTE_TAGS)
    for keyword in ("file_meta", "preamble"):
        if hasattr(ds, keyword):
            delattr(ds, keyword)
    return ds


def decode_slice(name: str, data: bytes) -> np.ndarray:
    """Returns one slice's values as float32 (rows, columns): rescaled, MONOCHROME1 inverted.

    Refuses a file whose pixel data does not really decode (truncated, damaged, wrong length).
    """
    return _pixels(name, _parse(name, data, DECODE_TAGS))[0]


def _pixels(name: str, ds: Dataset) -> tuple[np.ndarray, int]:
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
    # CRC-32, not a cryptographic hash: a phase is refused only when every one of its
    # slices matches another phase's, which different images never do by chance.
    digest = zlib.crc32(np.ascontiguousarray(stored).data)
    slope, intercept = _rescale(name, ds)
    pixels = stored.astype(np.float32)
    if slope != 1.0:
        pixels *= np.float32(slope)
    if intercept != 0.0:
        pixels += np.float32(intercept)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        np.negative(pixels, out=pixels)
    return pixels, digest


class FileMeta(NamedTuple):
    """What a file's group 2 says: how the rest is encoded, and what kind of object it is."""

    syntax: UID
    media_class: str
    end: int  # offset of the first element after group 2


def file_meta(name: str, data: bytes) -> FileMeta:
    """Returns the file's transfer syntax and media storage class, from its group 2 alone.

    Refuses a file naming no transfer syntax, and the deflated syntax (see the module's doc).
    """
    stream = io.BytesIO(data)
    stream.seek(DICM_AT + 4)
    values: dict[int, object] = {}
    end = DICM_AT + 4
    try:
        for element in data_element_generator(
            stream, False, True, stop_when=lambda tag, vr, length: tag.group != 2
        ):
            values[element.tag] = element.value
        end = stream.tell()
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
    return FileMeta(uid, media_class, end)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ") if isinstance(value, str) else ""


def _transfer_syntax(name: str, data: bytes) -> UID:
    """Returns the file's transfer syntax, refused unless a decoder for it is installed."""
    uid = file_meta(name, data).syntax
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


def _with_pixel_data(name: str, data: bytes, head: Head) -> Dataset:
    """Returns the survey's head with the file's PixelData element, parsed alone, added."""
    ds = head.dataset
    if head.pixel_offset is None:
        return ds
    implicit, little = ds.original_encoding
    stream = io.BytesIO(data)
    stream.seek(head.pixel_offset)
    try:
        rest = read_dataset(
            stream, bool(implicit), little is not False, specific_tags=[_PIXEL_DATA_TAG]
        )
        if "PixelData" in rest:
            ds.PixelData = rest.PixelData
    except MemoryError:
        raise
    except Exception as exc:
        # A truncated element: reported as missing pixel data, as a whole parse would.
        logger.debug("pixel data element unreadable (%s)", type(exc).__name__)
    return ds


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
    """Returns a tag's value, None when absent or empty; refuses a value that does not parse.

    Plain text and unsigned short values still raw from the file are read here directly:
    pydicom's general conversion costs more than the rest of a header survey.
    """
    try:
        element = ds.get_item(_tag(keyword))
        value = _raw_value(element, ds) if isinstance(element, RawDataElement) else None
        if value is None:
            value = ds.get(keyword)
    except MemoryError:
        raise
    except Exception:
        raise unreadable(name, keyword) from None
    return None if value is None or value == "" else value


@functools.cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def _raw_value(element: RawDataElement, ds: Dataset) -> object:
    """Returns a raw text or US value read directly, or None to let pydicom convert it."""
    raw = element.value
    if element.VR in _TEXT_VRS and isinstance(raw, bytes):
        text = raw.decode("ascii", "replace").strip("\x00 ")
        return text.split("\\") if "\\" in text else text
    if element.VR == "US" and isinstance(raw, bytes) and len(raw) == 2:
        little = ds.original_encoding[1] is not False
        return int.from_bytes(raw, "little" if little else "big")
    return None


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


def check_image_size(
    name: str, rows: int | None, columns: int | None, limits: IngestLimits
) -> tuple[int, int]:
    """Returns (rows, columns), refusing a file that declares none or one over the cap."""
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
    return rows, columns


def _image_size(name: str, ds: Dataset, limits: IngestLimits) -> tuple[int, int]:
    rows, columns = check_image_size(
        name, integer_tag(name, ds, "Rows"), integer_tag(name, ds, "Columns"), limits
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
