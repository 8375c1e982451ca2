"""Tests of the phantom generator: deterministic, a lesion that enhances, real DICOM files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, ImplicitVRLittleEndian, MRImageStorage, RLELossless

from mri_service import phantom
from mri_service.domain import PASSES, PHASES, PRE, position_along_normal, slice_order
from mri_service.phantom import PhantomSpec, generate_series, labels_json, write_series_zip

SMALL = PhantomSpec(slices=16, size=64, seed=3)


@pytest.fixture(scope="module")
def series() -> phantom.PhantomSeries:
    return generate_series(SMALL)


def _read(payload: bytes) -> pydicom.Dataset:
    # No force=True: a file without preamble and meta would be refused here.
    return pydicom.dcmread(io.BytesIO(payload))


def test_the_same_spec_draws_the_same_pixels(series: phantom.PhantomSeries) -> None:
    again = generate_series(SMALL)
    for phase in PHASES:
        assert np.array_equal(series.phases[phase], again.phases[phase])
    assert series.positive == again.positive


def test_another_seed_draws_another_series(series: phantom.PhantomSeries) -> None:
    other = generate_series(PhantomSpec(slices=16, size=64, seed=4))
    assert not np.array_equal(series.phases[PRE], other.phases[PRE])


def test_every_phase_is_a_stack_of_12_bit_stored_values(series: phantom.PhantomSeries) -> None:
    assert tuple(series.phases) == PHASES
    for stack in series.phases.values():
        assert stack.shape == (16, 64, 64)
        assert stack.dtype == np.uint16
        assert int(stack.max()) <= phantom.MAX_STORED
    assert len(series.positive) == 16


def test_the_lesion_shows_in_one_contiguous_run_of_slices() -> None:
    for seed in range(6):
        positive = np.flatnonzero(generate_series(PhantomSpec(16, 64, seed=seed)).positive)
        assert positive.size >= 1, f"seed {seed} has no positive slice"
        assert np.array_equal(positive, np.arange(positive[0], positive[-1] + 1))


def test_without_a_lesion_the_same_seed_differs_only_where_the_lesion_was(
    series: phantom.PhantomSeries,
) -> None:
    healthy = generate_series(PhantomSpec(slices=16, size=64, seed=3, lesion=False))
    assert not any(healthy.positive)
    assert healthy.lesion_mask is None and series.lesion_mask is not None
    changed = np.zeros(series.lesion_mask.shape, dtype=bool)
    for phase in PHASES:
        changed |= healthy.phases[phase] != series.phases[phase]
    assert changed.any()
    # Partial volume reaches a little past the half-coverage mask, never further.
    near = np.zeros_like(changed)
    z, y, x = np.nonzero(series.lesion_mask)
    for dz in (-1, 0, 1):
        for dy in (-2, -1, 0, 1, 2):
            for dx in (-2, -1, 0, 1, 2):
                near[np.clip(z + dz, 0, 15), np.clip(y + dy, 0, 63), np.clip(x + dx, 0, 63)] = True
    assert not (changed & ~near).any()


def test_the_lesion_enhances_over_the_passes_more_than_its_surroundings() -> None:
    for seed in range(4):
        series = generate_series(PhantomSpec(slices=16, size=64, seed=seed, noise=0.0))
        mask = series.lesion_mask
        assert mask is not None and mask.any()
        lesion = [float(series.physical(phase)[mask].mean()) for phase in PHASES]
        assert lesion[1] > 1.5 * lesion[0], f"seed {seed}: {lesion}"
        # The same anatomy without the lesion: the tissue it replaced enhances far less.
        healthy = generate_series(PhantomSpec(16, 64, seed=seed, lesion=False, noise=0.0))
        tissue = [float(healthy.physical(phase)[mask].mean()) for phase in PHASES]
        assert lesion[1] / lesion[0] > 1.3 * tissue[1] / tissue[0], f"seed {seed}"


def test_labels_list_the_positive_slices_in_anatomical_order(
    series: phantom.PhantomSeries,
) -> None:
    labels = labels_json(series)
    assert labels["slice_count"] == 16
    assert labels["positive_slices"] == [i for i, p in enumerate(series.positive) if p]
    json.dumps(labels)


def test_the_zip_holds_equal_names_in_four_phase_folders(
    series: phantom.PhantomSeries, tmp_path: Path
) -> None:
    path = write_series_zip(series, tmp_path / "case.zip", wrap_folder="study")
    names = zipfile.ZipFile(path).namelist()
    by_phase = {p: sorted(n.split("/")[2] for n in names if n.split("/")[1] == p) for p in PHASES}
    assert all(n.startswith("study/") for n in names)
    assert len(names) == 4 * 16
    assert all(by_phase[p] == by_phase[PRE] for p in PHASES)


def test_the_same_series_writes_a_byte_identical_zip(
    series: phantom.PhantomSeries, tmp_path: Path
) -> None:
    first = write_series_zip(series, tmp_path / "a.zip").read_bytes()
    assert first == write_series_zip(series, tmp_path / "b.zip").read_bytes()


def test_files_are_mr_images_with_the_geometry_and_rescale_tags(
    series: phantom.PhantomSeries,
) -> None:
    files = dict(phantom.dicom_files(series))
    study_uids: set[str] = set()
    series_uids: dict[str, set[str]] = {}
    sop_uids: set[str] = set()
    for name, payload in files.items():
        ds = _read(payload)
        phase = name.split("/")[0]
        assert ds.file_meta.MediaStorageSOPClassUID == MRImageStorage == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert UID(uid).is_valid
        study_uids.add(ds.StudyInstanceUID)
        series_uids.setdefault(phase, set()).add(ds.SeriesInstanceUID)
        sop_uids.add(ds.SOPInstanceUID)
        assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel) == (64, 64, 16, 1)
        assert float(ds.RescaleSlope) == series.rescale_slope
        assert float(ds.RescaleIntercept) == series.rescale_intercept
        assert ds.RescaleType == "US"
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx(series.pixel_spacing_mm)
        assert float(ds.SliceThickness) == pytest.approx(series.slice_thickness_mm)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(series.spacing_between_slices_mm)
        assert len(ds.ImageOrientationPatient) == 6 and len(ds.ImagePositionPatient) == 3
        assert ds.PatientName == phantom.PATIENT_NAME
        index = int(ds.InstanceNumber) - 1
        assert np.array_equal(ds.pixel_array, series.phases[phase][index])
    assert len(study_uids) == 1
    assert all(len(uids) == 1 for uids in series_uids.values())
    assert len({next(iter(uids)) for uids in series_uids.values()}) == len(PHASES)
    assert len(sop_uids) == len(files)


def test_shuffled_names_still_sort_into_anatomical_order_by_position(
    series: phantom.PhantomSeries,
) -> None:
    files = [
        (name, _read(payload))
        for name, payload in phantom.dicom_files(series, shuffle_names=True, seed=1)
        if name.startswith(f"{PASSES[0]}/")
    ]
    instance_numbers = [int(ds.InstanceNumber) for _, ds in files]
    assert instance_numbers != sorted(instance_numbers), "names still follow the anatomy"
    positions = [
        position_along_normal(ds.ImageOrientationPatient, ds.ImagePositionPatient)
        for _, ds in files
    ]
    ordered = [files[i][1].pixel_array for i in slice_order(positions, [None] * len(files))]
    assert np.array_equal(np.stack(ordered), series.phases[PASSES[0]])


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, RLELossless])
def test_other_transfer_syntaxes_decode_to_the_same_pixels(
    series: phantom.PhantomSeries, syntax: str
) -> None:
    _, payload = next(phantom.dicom_files(series, transfer_syntax=syntax))
    ds = _read(payload)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(ds.pixel_array, series.phases[PRE][int(ds.InstanceNumber) - 1])


def test_a_64_slice_256_pixel_series_generates_within_seconds() -> None:
    import time

    started = time.monotonic()
    generate_series(PhantomSpec(slices=64, size=256, seed=0))
    assert time.monotonic() - started < 5.0


def test_the_command_writes_cases_with_labels(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--count", "2", "--slices", "8", "--size", "32"]
    assert phantom.main([*argv, "--positive-fraction", "1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "case-0001.json",
        "case-0001.zip",
        "case-0002.json",
        "case-0002.zip",
    ]
    labels = json.loads((tmp_path / "case-0001.json").read_text())
    assert labels["slice_count"] == 8
    names = zipfile.ZipFile(tmp_path / "case-0001.zip").namelist()
    assert names[0] == "case-0001/pre/IM0001.dcm"
