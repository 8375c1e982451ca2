"""The layout tests' fixtures: one small phantom, its BreastWise and TCIA zips, module-wide."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from mri_service.phantom import PhantomSeries, generate_series, write_series_zip
from mri_service.tests import layouts
from mri_service.tests.layout_tests.checks import SPEC, read_dicoms


@pytest.fixture(scope="module")
def series() -> PhantomSeries:
    return generate_series(SPEC)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("layouts")


@pytest.fixture(scope="module")
def breastwise(series: PhantomSeries, out: Path) -> Path:
    return write_series_zip(series, out / "breastwise.zip")


@pytest.fixture(scope="module")
def tcia(series: PhantomSeries, out: Path) -> Path:
    return layouts.write_tcia_zip(
        series, out / "tcia.zip", fourth_pass=True, t1=True, localizer=True
    )


@pytest.fixture(scope="module")
def tcia_images(tcia: Path) -> dict[str, Dataset]:
    return read_dicoms(tcia)
