"""Settings parsing: defaults, the MRI_* variables, and bad values named at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mri_service.settings import DEFAULT_MODEL_DIR, Settings
from servicekit.settings import SettingsError


def read(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"MRI_MODEL_DIR": str(tmp_path), **env})


def test_it_reads_defaults_when_only_the_model_dir_is_set(tmp_path: Path) -> None:
    settings = read(tmp_path)
    assert settings.server.address == "127.0.0.1:50062"
    assert settings.backend == "embedded"
    assert settings.torchserve is None
    assert settings.batch_slices == 16
    assert settings.limits.max_slices == 1024
    assert settings.spool_dir.is_dir()


def test_the_shipped_model_set_is_the_default() -> None:
    assert Settings.from_env({}).model_dir == DEFAULT_MODEL_DIR


def test_torchserve_needs_its_address(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MRI_TORCHSERVE_ADDRESS is required"):
        read(tmp_path, MRI_BACKEND="torchserve")


def test_torchserve_reads_its_key_from_a_mounted_secret(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    settings = read(
        tmp_path,
        MRI_BACKEND="torchserve",
        MRI_TORCHSERVE_ADDRESS="torchserve:7070",
        MRI_TORCHSERVE_INFERENCE_KEY_FILE=str(key),
    )
    assert settings.torchserve is not None
    assert settings.torchserve.inference_key == "s3cret"
    assert settings.torchserve.model_prefix == "mri-"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MRI_BACKEND", "triton", "MRI_BACKEND"),
        ("MRI_TORCHSERVE_ADDRESS", "no-port", "host:port"),
        ("MRI_BATCH_SLICES", "0", "MRI_BATCH_SLICES"),
        ("MRI_MAX_SLICES", "many", "MRI_MAX_SLICES"),
        ("MRI_MIN_SLICES", "2000", "MRI_MIN_SLICES must not exceed"),
        ("MRI_SPOOL_DIR", "/nonexistent/spool", "MRI_SPOOL_DIR"),
        ("MRI_MAX_COMPRESSION_RATIO", "0.5", "MRI_MAX_COMPRESSION_RATIO"),
    ],
)
def test_a_bad_value_is_named(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        read(tmp_path, **{name: value})


def test_a_missing_model_dir_is_named() -> None:
    with pytest.raises(SettingsError, match="MRI_MODEL_DIR"):
        Settings.from_env({"MRI_MODEL_DIR": "/nonexistent/models"})
