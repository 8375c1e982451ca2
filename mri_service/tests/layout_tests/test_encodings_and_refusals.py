"""Pixel encodings that keep the meaning, refusal cases with exactly one fault, determinism."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
)

from mri_service.domain import PASSES, PHASES, PRE
from mri_service.phantom import PhantomSeries
from mri_service.tests import layouts
from mri_service.tests.layout_tests.checks import (
    DUKE_PHASE,
    SIZE,
    T,
    assert_phase,
    read_dicoms,
    source_uids,
    zip_entries,
)
from mri_service.tests.layouts import (
    DUKE_PATIENT,
    OTHER_PATIENT,
    Encoding,
    Fault,
    along_normal,
)

# --- pixel encodings -----------------------------------------------------------------------


def _meaning(ds: Dataset) -> np.ndarray:
    """Returns what a conformant reader makes of an image: MONOCHROME1 undone, rescaled."""
    stored = ds.pixel_array.astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        stored = (2 ** int(ds.BitsStored) - 1) - stored
    return stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _encoded_phases(zip_path: Path, breastwise: Path) -> dict[str, list[Dataset]]:
    images = read_dicoms(zip_path)
    assert sorted(images) == sorted(read_dicoms(breastwise))  # the same names and folders
    return {
        phase: sorted((ds for n, ds in images.items() if f"/{phase}/" in n), key=along_normal)
        for phase in PHASES
    }


@pytest.mark.parametrize("encoding", list(Encoding))
def test_each_encoding_keeps_the_meaning(
    series: PhantomSeries, breastwise: Path, out: Path, encoding: Encoding
) -> None:
    zip_path = layouts.write_encoded_zip(breastwise, out / f"encoded-{encoding}.zip", encoding)
    phases = _encoded_phases(zip_path, breastwise)
    images = [ds for group in phases.values() for ds in group]
    syntax = layouts.TRANSFER_SYNTAXES.get(encoding, ExplicitVRLittleEndian)
    assert {ds.file_meta.TransferSyntaxUID for ds in images} == {syntax}
    for phase, group in phases.items():
        meaning = np.stack([_meaning(ds) for ds in group])
        original = series.physical(phase).astype(np.float64)
        if encoding is Encoding.RESCALED:
            # An affine function of the original with positive slope, not the original.
            slope, intercept = np.polyfit(original.ravel(), meaning.ravel(), 1)
            assert slope > 0 and not np.allclose(meaning, original)
            assert np.allclose(meaning, slope * original + intercept, atol=1e-6)
            assert math.isclose(slope, 7.5)
        else:
            assert np.array_equal(meaning, original)
    first = images[0]
    if encoding is Encoding.MONOCHROME1:
        assert first.PhotometricInterpretation == "MONOCHROME1"
        assert np.array_equal(first.pixel_array, 4095 - series.phases[PRE][0])
    elif encoding is Encoding.RESCALED:
        assert (first.BitsStored, first.HighBit) == (14, 13)
        assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.25, 100.0)
    elif encoding is Encoding.HIGH_BITS:
        raw = np.frombuffer(first.PixelData, dtype="<u2")
        assert (first.BitsAllocated, first.BitsStored) == (16, 12)
        assert ((raw >> 12) > 0).all() and len(np.unique(raw >> 12)) > 4
    elif encoding is Encoding.SIGNED:
        assert first.PixelRepresentation == 1 and first.pixel_array.dtype == np.int16
        assert first.pixel_array.min() < 0
    elif syntax.is_compressed:
        assert first["PixelData"].is_undefined_length
        assert len(first.PixelData) < SIZE * SIZE * 2
    assert {ds.SOPInstanceUID for ds in images} == source_uids(series)


def test_encodings_combine(series: PhantomSeries, breastwise: Path, out: Path) -> None:
    zip_path = layouts.write_encoded_zip(
        series, out / "combined.zip", Encoding.MONOCHROME1, Encoding.HIGH_BITS, Encoding.RLE
    )
    for phase, group in _encoded_phases(zip_path, breastwise).items():
        assert np.array_equal(np.stack([_meaning(ds) for ds in group]), series.physical(phase))
        assert {ds.PhotometricInterpretation for ds in group} == {"MONOCHROME1"}


@pytest.mark.parametrize(
    "encodings",
    [
        (Encoding.RLE, Encoding.MONOCHROME1),
        (Encoding.RLE, Encoding.JPEG_LS),
        (Encoding.SIGNED, Encoding.MONOCHROME1),
        (Encoding.SIGNED, Encoding.SIGNED),
    ],
)
def test_encodings_that_cannot_combine_are_refused(
    series: PhantomSeries, out: Path, encodings: tuple[Encoding, ...]
) -> None:
    with pytest.raises(ValueError):
        layouts.write_encoded_zip(series, out / "refused.zip", *encodings)


# --- refusal cases -------------------------------------------------------------------------


def _groups(zip_path: Path, layout: str) -> dict[tuple[str, str], list[Dataset]]:
    """Returns (study folder or wrap, phase) -> images in anatomical order."""
    groups: dict[tuple[str, str], list[Dataset]] = {}
    for name, ds in read_dicoms(zip_path).items():
        parts = name.split("/")
        if layout == "breastwise":
            key = (parts[0], parts[-2])
        else:
            key = (ds.StudyInstanceUID, DUKE_PHASE[ds.SeriesDescription])
        groups.setdefault(key, []).append(ds)
    return {key: sorted(group, key=along_normal) for key, group in groups.items()}


def _only(values: set[T]) -> T:
    assert len(values) == 1, values
    return next(iter(values))


@pytest.fixture(scope="module")
def originals(series: PhantomSeries) -> dict[str, list[Dataset]]:
    return {p: list(files.values()) for p, files in layouts.load_phases(series).items()}


@pytest.mark.parametrize("layout", ["breastwise", "tcia"])
@pytest.mark.parametrize("fault", list(Fault))
def test_each_refusal_case_has_exactly_its_fault(
    series: PhantomSeries,
    originals: dict[str, list[Dataset]],
    out: Path,
    fault: Fault,
    layout: Literal["breastwise", "tcia"],
) -> None:
    zip_path = layouts.write_refusal_zip(
        series,
        out / f"refusal-{fault}-{layout}.zip",
        fault,
        layout=layout,
    )
    groups = _groups(zip_path, layout)
    if layout == "tcia":
        names = list(zip_entries(zip_path))
        assert names[:2] == ["metadata.csv", "LICENSE"]
        rows = list(csv.DictReader(io.StringIO(zip_entries(zip_path)["metadata.csv"].decode())))
        assert len(rows) == len({n.rpartition("/")[0] for n in names[2:]})
    if fault is Fault.TWO_STUDIES:
        _check_two_studies(groups, series)
        return
    by_phase = {phase: group for (_, phase), group in groups.items()}
    assert len(by_phase) == len(groups)
    if fault is Fault.THREE_PHASES:
        assert sorted(by_phase) == sorted((PRE, "1st_pass", "2nd_pass"))
        for phase, group in by_phase.items():
            assert_phase(group, series, phase)
        return
    assert sorted(by_phase) == sorted(PHASES)
    if fault is Fault.DUPLICATE_SERIES:
        _check_duplicate_series(by_phase, series, originals)
        return
    hit = "2nd_pass"
    for phase in PHASES:
        if phase != hit:
            assert_phase(by_phase[phase], series, phase)
            assert [ds.SOPInstanceUID for ds in by_phase[phase]] == [
                ds.SOPInstanceUID for ds in originals[phase]
            ]
    if fault is not Fault.RESAMPLED:
        assert_phase(by_phase[hit], series, "1st_pass" if fault is Fault.RETAGGED_COPY else hit)
    others = [ds for phase in PHASES if phase != hit for ds in by_phase[phase]]
    _PHASE_CHECKS[fault](_Hit(by_phase[hit], originals[hit], others, layout, zip_path))


def _check_two_studies(groups: dict[tuple[str, str], list[Dataset]], series: PhantomSeries) -> None:
    studies = {study for study, _ in groups}
    assert len(studies) == 2
    dates = set()
    for study in studies:
        for phase in PHASES:
            assert_phase(groups[study, phase], series, phase)
        images = [ds for (s, _), group in groups.items() if s == study for ds in group]
        assert len({ds.StudyInstanceUID for ds in images}) == 1
        assert len({ds.FrameOfReferenceUID for ds in images}) == 1
        dates.add(_only({ds.StudyDate for ds in images}))
    first, second = sorted(str(d) for d in dates)
    assert int(second[:4]) - int(first[:4]) == 1


def _check_duplicate_series(
    by_phase: dict[str, list[Dataset]], series: PhantomSeries, originals: dict[str, list[Dataset]]
) -> None:
    for group in by_phase.values():
        assert_phase(group, series, PRE)
        assert [ds.SOPInstanceUID for ds in group] == [ds.SOPInstanceUID for ds in originals[PRE]]
        assert _only({ds.SeriesInstanceUID for ds in group}) == originals[PRE][0].SeriesInstanceUID


@dataclass(frozen=True)
class _Hit:
    """The phase a fault hit (`wrong`), as it was (`right`), and the other phases' images."""

    wrong: list[Dataset]
    right: list[Dataset]
    others: list[Dataset]
    layout: str
    zip_path: Path

    def same(self, keyword: str) -> bool:
        values = {str(ds.get(keyword)) for ds in self.wrong}
        return values == {str(ds.get(keyword)) for ds in self.others}


def _check_retagged_copy(hit: _Hit) -> None:
    assert not {ds.SOPInstanceUID for ds in hit.wrong} & {ds.SOPInstanceUID for ds in hit.right}
    assert _only({ds.SeriesInstanceUID for ds in hit.wrong}) not in {
        ds.SeriesInstanceUID for ds in [*hit.others, *hit.right]
    }
    assert _only({ds.SeriesNumber for ds in hit.wrong}) == (3 if hit.layout == "breastwise" else 5)
    assert hit.same("StudyInstanceUID") and hit.same("FrameOfReferenceUID")


def _check_other_patient(hit: _Hit) -> None:
    assert _only({ds.PatientID for ds in hit.wrong}) == OTHER_PATIENT.patient_id
    assert _only({str(ds.PatientName) for ds in hit.wrong}) == OTHER_PATIENT.name
    assert _only({ds.PatientBirthDate for ds in hit.wrong}) == OTHER_PATIENT.birth_date
    assert len({ds.StudyInstanceUID for ds in hit.others}) == 1
    assert not hit.same("StudyInstanceUID") and not hit.same("FrameOfReferenceUID")
    if hit.layout == "tcia":
        subjects = {n.split("/")[1] for n in read_dicoms(hit.zip_path)}
        assert subjects == {DUKE_PATIENT.patient_id, OTHER_PATIENT.patient_id}


def _check_ct_modality(hit: _Hit) -> None:
    assert {(ds.Modality, ds.SOPClassUID) for ds in hit.wrong} == {("CT", CTImageStorage)}
    assert {ds.file_meta.MediaStorageSOPClassUID for ds in hit.wrong} == {CTImageStorage}
    assert {ds.Modality for ds in hit.others} == {"MR"}
    assert not any("ScanningSequence" in ds for ds in hit.wrong)


def _check_resampled(hit: _Hit) -> None:
    assert {(ds.Rows, ds.Columns) for ds in hit.wrong} == {(36, 36)}
    assert {(ds.Rows, ds.Columns) for ds in hit.others} == {(SIZE, SIZE)}
    assert math.isclose(
        float(hit.wrong[0].PixelSpacing[0]) * 36, float(hit.others[0].PixelSpacing[0]) * SIZE,
        rel_tol=1e-5,
    )  # fmt: skip


def _check_pixel_spacing(hit: _Hit) -> None:
    spacing = _only({float(ds.PixelSpacing[0]) for ds in hit.wrong})
    assert math.isclose(spacing, 1.25 * float(hit.others[0].PixelSpacing[0]), rel_tol=1e-5)
    assert hit.same("ImagePositionPatient") and hit.same("Rows")


def _check_orientation(hit: _Hit) -> None:
    normals = layouts._normal(hit.wrong[0]), layouts._normal(hit.others[0])
    tilt = math.degrees(math.acos(float(np.dot(*normals))))
    assert math.isclose(tilt, 20.0, abs_tol=1e-3)
    assert hit.same("ImagePositionPatient")


def _check_slice_positions(hit: _Hit) -> None:
    pairs = zip(hit.wrong, hit.right, strict=True)
    assert {round(along_normal(w) - along_normal(r), 3) for w, r in pairs} == {3.0}
    assert hit.same("ImageOrientationPatient") and hit.same("FrameOfReferenceUID")


def _check_frame_of_reference(hit: _Hit) -> None:
    assert len({ds.FrameOfReferenceUID for ds in hit.others}) == 1
    assert not hit.same("FrameOfReferenceUID") and hit.same("ImagePositionPatient")


# What each fault that hits one phase must have changed there, and only there.
_PHASE_CHECKS: dict[Fault, Callable[[_Hit], None]] = {
    Fault.RETAGGED_COPY: _check_retagged_copy,
    Fault.OTHER_PATIENT: _check_other_patient,
    Fault.CT_MODALITY: _check_ct_modality,
    Fault.RESAMPLED: _check_resampled,
    Fault.PIXEL_SPACING: _check_pixel_spacing,
    Fault.ORIENTATION: _check_orientation,
    Fault.SLICE_POSITIONS: _check_slice_positions,
    Fault.FRAME_OF_REFERENCE: _check_frame_of_reference,
}


def test_a_refusal_fault_can_hit_another_phase(series: PhantomSeries, out: Path) -> None:
    zip_path = layouts.write_refusal_zip(series, out / "pre-ct.zip", Fault.CT_MODALITY, phase=PRE)
    groups = _groups(zip_path, "breastwise")
    assert {ds.Modality for ds in groups["series", PRE]} == {"CT"}
    assert {ds.Modality for p in PASSES for ds in groups["series", p]} == {"MR"}
    with pytest.raises(ValueError, match="phase"):
        layouts.write_refusal_zip(series, out / "x.zip", Fault.CT_MODALITY, phase="4th")


def test_builders_are_deterministic(series: PhantomSeries, out: Path) -> None:
    first = layouts.write_tcia_zip(series, out / "again-1.zip", localizer=True)
    second = layouts.write_tcia_zip(series, out / "again-2.zip", localizer=True)
    assert first.read_bytes() == second.read_bytes()
