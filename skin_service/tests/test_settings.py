"""Settings parsing: defaults, every SKIN_* variable, and bad values named at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from servicekit.settings import SettingsError
from skin_service.settings import DEFAULT_MODEL_DIR, Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    # Settings only checks that the directory exists; the backend reads it at start.
    return tmp_path


def read(model_dir: Path, **env: str) -> Settings:
    return Settings.from_env({"SKIN_MODEL_DIR": str(model_dir), **env})


def test_it_reads_defaults_when_nothing_but_the_model_dir_is_set(model_dir: Path) -> None:
    settings = read(model_dir)
    assert settings.server.address == "127.0.0.1:50061"
    assert settings.server.component == "skin"
    assert settings.backend == "embedded"
    assert settings.tfserving is None
    assert settings.model_dir == model_dir
    assert settings.image_limits.max_bytes == 20 * 1024 * 1024
    assert settings.image_limits.max_pixels == 40_000_000
    assert settings.batcher.max_batch_size == 16


def test_the_default_model_is_the_one_shipped_in_the_package() -> None:
    assert DEFAULT_MODEL_DIR == ROOT / "skin_service" / "models" / "skin-demo"


def test_it_reads_every_skin_variable(model_dir: Path) -> None:
    settings = read(
        model_dir,
        SKIN_PORT="6001",
        SKIN_BATCH_MAX_SIZE="4",
        SKIN_BACKEND="tfserving",
        SKIN_TFSERVING_ADDRESS="tf-serving:8500",
        SKIN_TFSERVING_MODEL_NAME="lesions",
        SKIN_TFSERVING_MODEL_VERSION="3",
        SKIN_TFSERVING_SIGNATURE="classify",
        SKIN_TFSERVING_TIMEOUT_SECONDS="2.5",
        SKIN_MAX_IMAGE_BYTES="1000000",
        SKIN_MAX_IMAGE_PIXELS="4000000",
    )
    assert settings.server.port == 6001
    assert settings.batcher.max_batch_size == 4
    assert settings.backend == "tfserving"
    assert settings.tfserving is not None
    assert settings.tfserving.address == "tf-serving:8500"
    assert settings.tfserving.model_name == "lesions"
    assert settings.tfserving.model_version == 3
    assert settings.tfserving.signature_name == "classify"
    assert settings.tfserving.timeout_s == 2.5
    assert (settings.image_limits.max_bytes, settings.image_limits.max_pixels) == (
        1_000_000,
        4_000_000,
    )


def test_tf_serving_defaults_to_model_skin_at_its_latest_version(model_dir: Path) -> None:
    settings = read(model_dir, SKIN_BACKEND="tfserving", SKIN_TFSERVING_ADDRESS="localhost:8500")
    assert settings.tfserving is not None
    assert settings.tfserving.model_name == "skin"
    assert settings.tfserving.model_version is None
    assert settings.tfserving.signature_name == "serving_default"
    assert settings.tfserving.timeout_s == 10.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SKIN_BACKEND": "torchserve"}, "SKIN_BACKEND must be one of embedded, tfserving"),
        ({"SKIN_BACKEND": "tfserving"}, "SKIN_TFSERVING_ADDRESS is required"),
        (
            {"SKIN_BACKEND": "tfserving", "SKIN_TFSERVING_ADDRESS": "tf-serving"},
            "SKIN_TFSERVING_ADDRESS must be host:port",
        ),
        ({"SKIN_TFSERVING_MODEL_VERSION": "latest"}, "SKIN_TFSERVING_MODEL_VERSION must be an"),
        ({"SKIN_TFSERVING_MODEL_VERSION": "0"}, "SKIN_TFSERVING_MODEL_VERSION must be at least 1"),
        ({"SKIN_TFSERVING_TIMEOUT_SECONDS": "soon"}, "SKIN_TFSERVING_TIMEOUT_SECONDS must be a"),
        ({"SKIN_MAX_IMAGE_BYTES": "-1"}, "SKIN_MAX_IMAGE_BYTES must be at least 1"),
        ({"SKIN_MAX_IMAGE_PIXELS": "many"}, "SKIN_MAX_IMAGE_PIXELS must be an integer"),
        ({"SKIN_PORT": "abc"}, "SKIN_PORT must be an integer"),
        ({"SKIN_BATCH_MAX_SIZE": "0"}, "SKIN_BATCH_MAX_SIZE must be at least 1"),
        (
            {"SKIN_MAX_IMAGE_BYTES": str(8 * 1024 * 1024), "SKIN_MAX_MESSAGE_BYTES": "4194304"},
            "SKIN_MAX_IMAGE_BYTES (8388608) must not exceed SKIN_MAX_MESSAGE_BYTES",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(
    model_dir: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        read(model_dir, **env)


def test_a_bad_tf_serving_value_is_refused_even_with_the_embedded_backend(model_dir: Path) -> None:
    with pytest.raises(SettingsError, match="SKIN_TFSERVING_TIMEOUT_SECONDS"):
        read(model_dir, SKIN_TFSERVING_TIMEOUT_SECONDS="0")


def test_a_model_dir_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"SKIN_MODEL_DIR: .* is not a directory"):
        read(tmp_path / "missing")


def test_python_m_skin_service_stops_with_the_variable_and_exit_code_2(model_dir: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SKIN_MODEL_DIR": str(model_dir),
        "SKIN_BACKEND": "tfserving",
    }
    result = subprocess.run(
        [sys.executable, "-m", "skin_service"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("skin: SKIN_TFSERVING_ADDRESS is required")


def test_python_m_skin_service_explains_a_model_it_cannot_load(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SKIN_MODEL_DIR": str(tmp_path), "SKIN_PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "skin_service"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "skin: cannot start: SKIN_MODEL_DIR holds no model_card.json" in result.stderr
    assert "Traceback" not in result.stderr
