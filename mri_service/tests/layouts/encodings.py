"""The same pixels in other encodings: MONOCHROME1, rescale, signed, compressed syntaxes."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    JPEGLosslessSV1,
)

from mri_service.tests.layouts.base import (
    RESCALE_GAIN,
    RESCALE_INTERCEPT,
    RESCALE_OFFSET,
    RESCALE_SLOPE,
    TRANSFER_SYNTAXES,
    Encoding,
    Phases,
    Source,
)
from mri_service.tests.layouts.tags import (
    _set_pixels,
    _stored,
    all_datasets,
    encode,
    load_phases,
    write_breastwise_zip,
)


def _monochrome1(ds: Dataset) -> None:
    _require_unsigned(ds, Encoding.MONOCHROME1)
    maximum = (1 << int(ds.BitsStored)) - 1
    _set_pixels(ds, (maximum - _stored(ds).astype(np.int64)).astype(np.uint16))
    ds.PhotometricInterpretation = "MONOCHROME1"


def _rescaled(ds: Dataset) -> None:
    _require_unsigned(ds, Encoding.RESCALED)
    stored = _stored(ds).astype(np.int64) * RESCALE_GAIN + RESCALE_OFFSET
    largest = ((1 << int(ds.BitsStored)) - 1) * RESCALE_GAIN + RESCALE_OFFSET
    bits = max(int(ds.BitsStored), math.ceil(math.log2(largest + 1)))
    if bits > int(ds.BitsAllocated):
        raise ValueError("rescaled values do not fit the bits allocated")
    ds.BitsStored, ds.HighBit = bits, bits - 1
    _set_pixels(ds, stored.astype(np.uint16))
    ds.RescaleSlope = RESCALE_SLOPE
    ds.RescaleIntercept = RESCALE_INTERCEPT


def _high_bits(ds: Dataset, rng: np.random.Generator) -> None:
    bits = int(ds.BitsStored)
    if bits >= int(ds.BitsAllocated):
        raise ValueError("no bits above BitsStored to fill")
    low = _stored(ds).astype(np.int64) & ((1 << bits) - 1)  # two's complement if signed
    garbage = rng.integers(1, 1 << (int(ds.BitsAllocated) - bits), size=low.shape)
    raw = (low | (garbage << bits)).astype(np.uint16)
    ds.Rows, ds.Columns = raw.shape
    ds.PixelData = raw.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"


def _signed(ds: Dataset) -> None:
    _require_unsigned(ds, Encoding.SIGNED)
    shift = 1 << (int(ds.BitsStored) - 1)
    values = _stored(ds).astype(np.int64) - shift
    ds.PixelRepresentation = 1
    _set_pixels(ds, values.astype(np.int16))
    ds.RescaleIntercept = float(ds.RescaleIntercept) + shift * float(ds.RescaleSlope)


def _require_unsigned(ds: Dataset, encoding: Encoding) -> None:
    if int(ds.PixelRepresentation) != 0:
        raise ValueError(f"{encoding} needs unsigned stored values; put it before SIGNED")


def _big_endian(ds: Dataset) -> None:
    words = np.frombuffer(ds.PixelData, dtype="<u2")
    ds.PixelData = words.astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _gdcm_jpeg_lossless(ds: Dataset) -> None:
    """Encodes the pixel data as JPEG Lossless SV1 with GDCM, the other tags untouched."""
    try:
        import gdcm  # type: ignore[import-untyped]
    except ImportError as error:  # pragma: no cover - python-gdcm is in the dev extra
        raise RuntimeError("JPEG Lossless SV1 needs python-gdcm (the dev extra)") from error
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "in.dcm", Path(scratch) / "out.dcm"
        source.write_bytes(encode(ds))
        reader = gdcm.ImageReader()
        reader.SetFileName(str(source))
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(target))
        ok = reader.Read()
        if ok:
            change.SetInput(reader.GetImage())
            ok = change.Change()
        if ok:
            writer.SetFile(reader.GetFile())
            writer.SetImage(change.GetOutput())
            ok = writer.Write()
        if not ok:
            raise RuntimeError("GDCM could not encode JPEG Lossless SV1")
        encoded = pydicom.dcmread(target)
    ds["PixelData"] = encoded["PixelData"]
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1


def _apply_transfer_syntax(ds: Dataset, encoding: Encoding) -> None:
    if encoding in (Encoding.IMPLICIT_VR, Encoding.DEFLATED):
        ds.file_meta.TransferSyntaxUID = TRANSFER_SYNTAXES[encoding]
    elif encoding is Encoding.BIG_ENDIAN:
        _big_endian(ds)
    elif encoding is Encoding.JPEG_LOSSLESS_SV1:
        _gdcm_jpeg_lossless(ds)
    else:
        ds.compress(TRANSFER_SYNTAXES[encoding], generate_instance_uid=False)


def encode_phases(phases: Phases, encodings: Sequence[Encoding], *, seed: int = 0) -> None:
    """Re-encodes every image of phases in place with encodings, applied in order.

    Raises:
        ValueError: an encoding repeats, more than one is a transfer syntax, one follows
            the transfer syntax, or a value transform needs unsigned values it lacks.
    """
    if len(set(encodings)) != len(encodings):
        raise ValueError("an encoding is given twice")
    syntaxes = [i for i, encoding in enumerate(encodings) if encoding in TRANSFER_SYNTAXES]
    if len(syntaxes) > 1 or (syntaxes and syntaxes[0] != len(encodings) - 1):
        raise ValueError("at most one transfer syntax, after the value transforms")
    rng = np.random.default_rng(seed)
    for ds in all_datasets(phases):
        for encoding in encodings:
            if encoding is Encoding.MONOCHROME1:
                _monochrome1(ds)
            elif encoding is Encoding.RESCALED:
                _rescaled(ds)
            elif encoding is Encoding.HIGH_BITS:
                _high_bits(ds, rng)
            elif encoding is Encoding.SIGNED:
                _signed(ds)
            else:
                _apply_transfer_syntax(ds, encoding)


def write_encoded_zip(
    source: Source,
    zip_path: Path,
    *encodings: Encoding,
    wrap_folder: str | None = "series",
    seed: int = 0,
) -> Path:
    """Writes the BreastWise zip again with its pixels encoded by encodings (see Encoding).

    Names, folders and every other tag stay; SOPInstanceUIDs are kept (a lossless change).
    """
    phases = load_phases(source)
    encode_phases(phases, encodings, seed=seed)
    return write_breastwise_zip(phases, zip_path, wrap_folder=wrap_folder)
