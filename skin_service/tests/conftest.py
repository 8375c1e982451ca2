"""Fixtures of the skin service's tests: a small SavedModel, its backend, encoded images."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from tests.tfserving_fake.fixture_model import export_fixture_model

if TYPE_CHECKING:  # importing the backend imports TensorFlow, which settings tests do not need
    from skin_service.backends.embedded import EmbeddedBackend


def encoded(image: Image.Image, fmt: str = "PNG", **save: object) -> bytes:
    """Returns the image encoded in fmt."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def lesion(size: int = 120, *, seed: int = 0) -> Image.Image:
    """Returns a photo-like image: a dark blotch on skin tone with some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    centre = size / 2 + rng.normal(0, size / 12, 2)
    radius = size * rng.uniform(0.15, 0.3)
    inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    skin = np.array([224, 172, 150]) + rng.normal(0, 8, (size, size, 3))
    spot = np.array(rng.uniform(40, 120, 3)) + rng.normal(0, 12, (size, size, 3))
    pixels = np.where(inside[..., None], spot, skin)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="session")
def fixture_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns a model directory with TF Serving's layout, built once per test session."""
    return export_fixture_model(tmp_path_factory.mktemp("skin-model"))


@pytest.fixture(scope="session")
def embedded_backend(fixture_model_dir: Path) -> EmbeddedBackend:
    """Returns the embedded backend with the fixture model loaded, shared by every test."""
    from skin_service.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(fixture_model_dir)
    backend.load()
    return backend
