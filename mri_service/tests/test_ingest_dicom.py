"""Tests that malformed DICOM files are refused naming the entry, and compressed ones decode."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import HTJ2KLossless, RLELossless, generate_uid

from mri_service.domain import PHASES
from mri_service.errors import SeriesRejected
from mri_service.ingest import IngestLimits
from mri_service.tests.hostile_zips import (
    ingest_zip,
    mutate_dicom,
    phantom_zip,
    read_entries,
    rewrite,
    write_zip,
)

SLICES = 4
LIMITS = IngestLimits()
TARGET = "case/2nd_pass/IM0003.dcm"
JPEG_XL_LOSSLESS = b"1.2.840.10008.1.2.4.110"
# What a real patient's file would carry: none of it may leave the service.
PATIENT_NAME = "Quixotic^Zebulon"
PATIENT_ID = "PID-90210-QZ"
BIRTH_DATE = "19230405"


@pytest.fixture(scope="module")
def valid_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom_zip(tmp_path_factory.mktemp("valid") / "series.zip", slices=SLICES)


@pytest.fixture(scope="module")
def rle_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rle")
    return phantom_zip(folder / "series.zip", slices=SLICES, transfer_syntax=RLELossless)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder


Mutation = Callable[[bytes], bytes]


def _dataset_change(change: Callable[[Dataset], None]) -> Mutation:
    return lambda data: mutate_dicom(data, change)


def _delete(*keywords: str) -> Mutation:
    def change(ds: Dataset) -> None:
        for keyword in keywords:
            delattr(ds, keyword)

    return _dataset_change(change)


def _set(**values: object) -> Mutation:
    def change(ds: Dataset) -> None:
        for keyword, value in values.items():
            setattr(ds, keyword, value)

    return _dataset_change(change)


def _smaller_image(ds: Dataset) -> None:
    ds.Rows = ds.Columns = 32
    ds.PixelData = np.zeros((32, 32), dtype="<u2").tobytes()


def _syntax(uid: str) -> Mutation:
    return _dataset_change(lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", uid))


def _jpeg_xl(data: bytes) -> bytes:
    # pydicom 3.0 will not write a syntax it does not know; swap a UID of equal length.
    marked = _syntax(HTJ2KLossless)(data)
    return marked.replace(HTJ2KLossless.encode(), JPEG_XL_LOSSLESS)


def _half_rle_frame(ds: Dataset) -> None:
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])


@dataclass(frozen=True)
class Malformed:
    mutate: Mutation
    says: str  # besides the entry's name
    reason: str
    limits: IngestLimits = field(default_factory=IngestLimits)
    rle: bool = False  # start from the RLE-compressed series


MALFORMED: dict[str, Malformed] = {
    "not-dicom": Malformed(lambda data: b"hello " * 200, "not a DICOM file", "SERIES_NOT_DICOM"),
    "no-preamble": Malformed(lambda data: data[128:], "not a DICOM file", "SERIES_NOT_DICOM"),
    "garbage-after-marker": Malformed(
        lambda data: data[:132] + b"\xff" * 400, "not a valid DICOM file", "SERIES_NOT_DICOM"
    ),
    "no-pixel-data": Malformed(_delete("PixelData"), "no pixel data", "SERIES_NO_PIXELS"),
    "truncated-pixel-data": Malformed(
        lambda data: data[:-2000], "is truncated", "SERIES_UNDECODABLE"
    ),
    "truncated-compressed-pixel-data": Malformed(
        lambda data: data[:-1000], "no pixel data, or it is truncated", "SERIES_NO_PIXELS", rle=True
    ),
    "compressed-pixel-data-of-wrong-length": Malformed(
        _dataset_change(_half_rle_frame), "does not decode", "SERIES_UNDECODABLE", rle=True
    ),
    "other-size-in-phase": Malformed(
        _dataset_change(_smaller_image), "is 32x32 pixels", "SERIES_MIXED_SIZES"
    ),
    "image-over-the-cap": Malformed(
        lambda data: data,
        "declares 64x64",
        "SERIES_IMAGE_TOO_LARGE",
        IngestLimits(max_image_side=32),
    ),
    "header-claims-a-huge-image": Malformed(
        _set(Rows=60000), "declares 60000x64", "SERIES_IMAGE_TOO_LARGE"
    ),
    "no-image-size": Malformed(_delete("Rows"), "declares no image size", "SERIES_BAD_HEADER"),
    "colour": Malformed(_set(SamplesPerPixel=3), "colour", "SERIES_BAD_HEADER"),
    "multi-frame": Malformed(_set(NumberOfFrames=2), "several frames", "SERIES_BAD_HEADER"),
    "jpeg-2000-part-2-without-decoder": Malformed(
        _syntax("1.2.840.10008.1.2.4.92"),
        "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only) "
        "(1.2.840.10008.1.2.4.92), which has no decoder installed",
        "SERIES_TRANSFER_SYNTAX",
        rle=True,  # compressed syntaxes need encapsulated pixel data
    ),
    "jpeg-xl": Malformed(
        _jpeg_xl,
        "JPEG XL Lossless (1.2.840.10008.1.2.4.110), which has no decoder installed",
        "SERIES_TRANSFER_SYNTAX",
        rle=True,
    ),
    "unknown-syntax": Malformed(
        _syntax("1.2.3.4.5"), "'1.2.3.4.5', which has no decoder", "SERIES_TRANSFER_SYNTAX"
    ),
    "deflated": Malformed(
        _syntax("1.2.840.10008.1.2.1.99"),
        "Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99), which is not accepted",
        "SERIES_TRANSFER_SYNTAX",
    ),
}


def _with(zip_path: Path, target: Path, name: str, mutate: Mutation) -> Path:
    return rewrite(zip_path, target, change={name: mutate(read_entries(zip_path)[name])})


@pytest.mark.parametrize("kind", list(MALFORMED))
@pytest.mark.filterwarnings("ignore:End of file reached before delimiter:UserWarning")
async def test_it_rejects_a_malformed_dicom_naming_the_entry_and_leaves_nothing_behind(
    kind: str, valid_zip: Path, rle_zip: Path, spool: Path, tmp_path: Path
) -> None:
    case = MALFORMED[kind]
    source = rle_zip if case.rle else valid_zip
    target = "case/pre/IM0001.dcm" if kind == "image-over-the-cap" else TARGET
    malformed = _with(source, tmp_path / "malformed.zip", target, case.mutate)

    with pytest.raises(SeriesRejected) as caught:
        await ingest_zip(malformed, spool, case.limits)

    assert f"'{target}'" in caught.value.message
    assert case.says in caught.value.message
    assert caught.value.reason == case.reason
    assert list(spool.iterdir()) == []
    planes = await ingest_zip(valid_zip, spool, LIMITS)
    assert planes["pre"].shape == (SLICES, 16, 16)
    assert list(spool.iterdir()) == []


def _with_patient(mutate: Mutation) -> Mutation:
    def identified(data: bytes) -> bytes:
        def change(ds: Dataset) -> None:
            ds.PatientName = PATIENT_NAME
            ds.PatientID = PATIENT_ID
            ds.PatientBirthDate = BIRTH_DATE

        return mutate(mutate_dicom(data, change))

    return identified


@pytest.mark.parametrize(
    "kind", ["no-pixel-data", "truncated-pixel-data", "compressed-pixel-data-of-wrong-length"]
)
async def test_it_never_puts_patient_data_in_messages_or_logs(
    kind: str,
    valid_zip: Path,
    rle_zip: Path,
    spool: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = MALFORMED[kind]
    source = rle_zip if case.rle else valid_zip
    malformed = _with(source, tmp_path / "identified.zip", TARGET, _with_patient(case.mutate))
    caplog.set_level(logging.DEBUG)

    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        with pytest.raises(SeriesRejected) as caught:
            await ingest_zip(malformed, spool, LIMITS)

    said = [caught.value.message, str(caught.value), caplog.text]
    said += [str(warning.message) for warning in caught_warnings]
    assert PATIENT_NAME.encode() in read_entries(malformed)[TARGET]  # the file does carry it
    for secret in (PATIENT_NAME, "Quixotic", "Zebulon", PATIENT_ID, BIRTH_DATE):
        assert not any(secret in text for text in said), secret


def _bundled_series(zip_path: Path, file_name: str) -> Path:
    """Writes a study whose pre-contrast slices are one of pydicom's bundled 64x64 MR files.

    The passes are the uncompressed MR_small.dcm with its pixels rolled by phase (the
    phases must not be the same images), the same in every study this writes.
    """
    path = get_testdata_file(file_name)
    plain = get_testdata_file("MR_small.dcm")
    assert path is not None and plain is not None, f"{file_name} is not bundled with pydicom"
    entries = []
    for number, phase in enumerate(PHASES, start=1):
        data = Path(path if phase == PHASES[0] else plain).read_bytes()
        series_uid = generate_uid(entropy_srcs=[phase])
        for index in range(3):

            def place(
                ds: Dataset,
                index: int = index,
                number: int = number,
                phase: str = phase,
                series_uid: str = series_uid,
            ) -> None:
                ds.ImagePositionPatient = [0.0, 0.0, float(index)]
                ds.InstanceNumber = index + 1
                ds.SeriesInstanceUID = series_uid
                ds.SeriesNumber = number
                ds.SOPInstanceUID = generate_uid(entropy_srcs=[phase, str(index)])
                if number > 1:
                    ds.PixelData = np.roll(ds.pixel_array, number * 7 + index).tobytes()

            entries.append((f"{phase}/IM{index}.dcm", mutate_dicom(data, place)))
    return write_zip(zip_path, entries)


@pytest.mark.parametrize(
    "file_name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
async def test_it_decodes_every_transfer_syntax_with_a_handler(
    file_name: str, spool: Path, tmp_path: Path
) -> None:
    expected = await ingest_zip(_bundled_series(tmp_path / "a.zip", "MR_small.dcm"), spool, LIMITS)

    planes = await ingest_zip(_bundled_series(tmp_path / "b.zip", file_name), spool, LIMITS)

    for phase in PHASES:
        np.testing.assert_array_equal(planes[phase], expected[phase])
    assert float(expected["pre"].std()) > 10.0  # a real image, not a blank one


async def test_it_decodes_a_compressed_series_like_the_uncompressed_one(
    valid_zip: Path, rle_zip: Path, spool: Path
) -> None:
    compressed = await ingest_zip(rle_zip, spool, LIMITS, input_size=32)
    plain = await ingest_zip(valid_zip, spool, LIMITS, input_size=32)

    for phase in PHASES:
        np.testing.assert_array_equal(compressed[phase], plain[phase])


def test_the_rle_fixture_is_really_compressed(rle_zip: Path) -> None:
    data = read_entries(rle_zip)["case/pre/IM0001.dcm"]
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == RLELossless
