"""Tests of slice ordering, rescaling and plane loading on valid phantom series."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from mri_service import domain
from mri_service.domain import PHASES
from mri_service.errors import SeriesRejected
from mri_service.ingest import IngestLimits, load_series, open_study
from mri_service.ingest.dicom import decode_slice
from mri_service.phantom import PhantomSeries, PhantomSpec, generate_series, write_series_zip
from mri_service.tests.hostile_zips import ingest_zip, mutate_dicom, read_entries, write_zip

SLICES = 6
SIZE = 16
LIMITS = IngestLimits()


@pytest.fixture(scope="module")
def series() -> PhantomSeries:
    return generate_series(PhantomSpec(slices=SLICES, size=64, lesion=True, seed=1))


@pytest.fixture(scope="module")
def shuffled_zip(series: PhantomSeries, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shuffled") / "series.zip"
    return write_series_zip(series, path, wrap_folder="case", shuffle_names=True, seed=3)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder


def _expected(series: PhantomSeries, size: int = SIZE) -> dict[str, np.ndarray]:
    """Returns the planes in anatomical order, computed straight from the phantom's arrays."""
    return {
        phase: np.stack([domain.preprocess_slice(s, size) for s in series.physical(phase)])
        for phase in PHASES
    }


def _assert_planes(planes: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(planes) == set(PHASES)
    for phase in PHASES:
        assert planes[phase].dtype == np.float32
        np.testing.assert_allclose(planes[phase], expected[phase], atol=1e-3)


def _index_of(ds: Dataset) -> int:
    """Returns a phantom slice's anatomical index, from the InstanceNumber it was written with."""
    return int(ds.InstanceNumber) - 1


def _mutate_all(
    source: Path,
    target: Path,
    change: Callable[[str, Dataset], None],
    only: Callable[[str], bool] = lambda name: True,
) -> Path:
    changed = {}
    for name, data in read_entries(source).items():

        def apply(ds: Dataset, name: str = name) -> None:
            change(name, ds)

        changed[name] = mutate_dicom(data, apply) if only(name) else data
    return write_zip(target, changed.items())


async def test_it_orders_shuffled_file_names_by_position(
    series: PhantomSeries, shuffled_zip: Path, spool: Path
) -> None:
    index = open_study(shuffled_zip, LIMITS)
    planes = await ingest_zip(shuffled_zip, spool, LIMITS, input_size=SIZE)

    pre = [h.entry for h in index.phase("pre").slices]
    assert list(pre) != sorted(pre)  # the names alone would give another order
    assert index.ordered_by == "position"
    assert index.slice_count == SLICES
    _assert_planes(planes, _expected(series))


async def test_it_orders_an_oblique_stack_along_its_normal(
    series: PhantomSeries, shuffled_zip: Path, spool: Path, tmp_path: Path
) -> None:
    angle = math.radians(40)
    row, column = np.array([1.0, 0.0, 0.0]), np.array([0.0, math.cos(angle), math.sin(angle)])
    normal = np.cross(row, column)
    # Large in-plane shifts: z alone is not monotonic along the stack.
    shifts = [0.0, -60.0, 40.0, -90.0, 25.0, -10.0]
    z_order = np.argsort([3.0 * i * normal[2] + shifts[i] * column[2] for i in range(SLICES)])
    assert list(z_order) != list(range(SLICES))

    def oblique(name: str, ds: Dataset) -> None:
        i = _index_of(ds)
        ds.ImageOrientationPatient = [*row.tolist(), *column.tolist()]
        ds.ImagePositionPatient = (3.0 * i * normal + shifts[i] * column).tolist()
        ds.InstanceNumber = SLICES - i  # misleading on purpose: position decides

    tilted = _mutate_all(shuffled_zip, tmp_path / "oblique.zip", oblique)

    planes = await ingest_zip(tilted, spool, LIMITS, input_size=SIZE)

    _assert_planes(planes, _expected(series))


async def test_it_falls_back_to_instance_number_without_positions(
    series: PhantomSeries, shuffled_zip: Path, spool: Path, tmp_path: Path
) -> None:
    unplaced = _mutate_all(
        shuffled_zip,
        tmp_path / "unplaced.zip",
        lambda name, ds: delattr(ds, "ImagePositionPatient"),
    )

    index = open_study(unplaced, LIMITS)
    planes = await ingest_zip(unplaced, spool, LIMITS, input_size=SIZE)

    assert index.ordered_by == "instance_number"
    _assert_planes(planes, _expected(series))


async def test_it_refuses_slices_with_neither_position_nor_instance_number(
    shuffled_zip: Path, spool: Path, tmp_path: Path
) -> None:
    def strip(name: str, ds: Dataset) -> None:
        del ds.ImagePositionPatient
        if name == "case/pre/IM0003.dcm":
            del ds.InstanceNumber

    unordered = _mutate_all(shuffled_zip, tmp_path / "unordered.zip", strip)

    with pytest.raises(SeriesRejected) as caught:
        await ingest_zip(unordered, spool, LIMITS)

    assert "'case/pre/IM0003.dcm' lacks InstanceNumber" in caught.value.message
    assert caught.value.reason == "SERIES_ORDER"
    assert list(spool.iterdir()) == []


async def test_it_refuses_a_phase_whose_slices_lie_elsewhere_than_the_pre_phase(
    shuffled_zip: Path, spool: Path, tmp_path: Path
) -> None:
    def shift(name: str, ds: Dataset) -> None:
        x, y, z = ds.ImagePositionPatient
        ds.ImagePositionPatient = [x, y, float(z) + 3.0]

    shifted = _mutate_all(
        shuffled_zip, tmp_path / "shifted.zip", shift, only=lambda n: "/2nd_pass/" in n
    )

    with pytest.raises(SeriesRejected) as caught:
        await ingest_zip(shifted, spool, LIMITS)

    assert caught.value.message.startswith(
        "the 2nd_pass phase (series 3 'phantom fat-sat T1 2nd_pass') differs from the pre "
        "phase (series 1 'phantom fat-sat T1 pre') in ImagePositionPatient: slice 0 lies 3.00 mm"
    )
    assert caught.value.reason == "SERIES_PHASE_GEOMETRY"
    assert list(spool.iterdir()) == []


async def test_it_refuses_a_phase_of_differently_oriented_slices(
    shuffled_zip: Path, spool: Path, tmp_path: Path
) -> None:
    def sagittal(name: str, ds: Dataset) -> None:
        ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]

    mixed = _mutate_all(
        shuffled_zip, tmp_path / "mixed.zip", sagittal, only=lambda n: n == "case/pre/IM0004.dcm"
    )

    with pytest.raises(SeriesRejected) as caught:
        await ingest_zip(mixed, spool, LIMITS)

    assert "'case/pre/IM0004.dcm' is oriented differently" in caught.value.message


def test_decoding_applies_rescale_slope_and_intercept(shuffled_zip: Path) -> None:
    data = read_entries(shuffled_zip)["case/pre/IM0001.dcm"]

    def rescale(ds: Dataset) -> None:
        ds.RescaleSlope, ds.RescaleIntercept = 2.5, -100

    stored = pydicom.dcmread(io.BytesIO(data)).pixel_array.astype(np.float32)

    pixels = decode_slice("case/pre/IM0001.dcm", mutate_dicom(data, rescale))

    np.testing.assert_allclose(pixels, stored * 2.5 - 100)


async def test_a_negative_rescale_slope_inverts_the_planes(
    series: PhantomSeries, shuffled_zip: Path, spool: Path, tmp_path: Path
) -> None:
    # A positive slope cancels out in the per-slice normalisation; a negative one does not.
    def invert(name: str, ds: Dataset) -> None:
        ds.RescaleSlope, ds.RescaleIntercept = -1, 4095

    inverted = _mutate_all(
        shuffled_zip, tmp_path / "inverted.zip", invert, only=lambda n: "/pre/" in n
    )

    planes = await ingest_zip(inverted, spool, LIMITS, input_size=SIZE)
    plain = _expected(series)

    np.testing.assert_allclose(planes["pre"], 255.0 - plain["pre"], atol=1e-3)
    assert np.abs(planes["pre"] - plain["pre"]).max() > 100
    np.testing.assert_allclose(planes["1st_pass"], plain["1st_pass"], atol=1e-3)


def test_it_reports_progress_after_every_slice(shuffled_zip: Path) -> None:
    calls: list[tuple[int, int]] = []

    load_series(shuffled_zip, SIZE, LIMITS, on_progress=lambda *a: calls.append(a))

    total = len(PHASES) * SLICES
    assert calls == [(done, total) for done in range(1, total + 1)]


def test_it_loads_a_folder_like_the_zip(
    series: PhantomSeries, shuffled_zip: Path, tmp_path: Path
) -> None:
    for name, data in read_entries(shuffled_zip).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "case" / ".DS_Store").write_bytes(b"Bud1")

    planes = load_series(tmp_path / "case", SIZE)

    _assert_planes(planes, _expected(series))
    (tmp_path / "case" / "notes.txt").write_text("hello")
    _assert_planes(load_series(tmp_path / "case", SIZE), _expected(series))
    skipped = open_study(tmp_path / "case").skipped
    assert [(s.path, s.reason) for s in skipped] == [
        (".DS_Store", "operating-system clutter"),
        ("notes.txt", "not a DICOM file"),
    ]


def test_the_study_lists_every_phase_in_the_same_anatomical_order(shuffled_zip: Path) -> None:
    index = open_study(shuffled_zip, LIMITS)

    assert [phase.name for phase in index.phases] == list(PHASES)
    positions = {tuple(h.position for h in p.slices) for p in index.phases}
    assert len(positions) == 1
    along = [p for i in range(SLICES) if (p := index.phases[0].position_mm(i)) is not None]
    assert len(along) == SLICES and along == sorted(along)
    assert all((h.rows, h.columns) == (64, 64) for p in index.phases for h in p.slices)
    assert index.selected_by == "folders"
