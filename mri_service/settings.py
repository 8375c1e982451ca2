"""The MRI service's settings, read once from MRI_* environment variables and validated."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mri_service.ingest.limits import GIB, MIB, IngestLimits
from mri_service.ingest.selection import DEFAULT_DYNAMIC, DEFAULT_EXCLUDED, SelectionRules
from servicekit.settings import (
    ServerSettings,
    SettingsError,
    env_choice,
    env_float,
    env_int,
    env_secret,
    env_str,
)

PREFIX = "MRI_"
DEFAULT_PORT = 50062
BACKENDS = ("embedded", "torchserve")
# The demo model set shipped inside the package, so that `python -m mri_service` works as is.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "mri-demo"


@dataclass(frozen=True)
class TorchServeSettings:
    """Where TorchServe's gRPC inference API runs, how to authenticate and which models to call."""

    address: str  # host:port of TorchServe's gRPC inference API (7070 by default)
    inference_key: str | None  # TorchServe's inference token; None when authorization is off
    model_prefix: str  # TorchServe model names are prefix + "single" / "scantype"
    timeout_s: float


@dataclass(frozen=True)
class Settings:
    """Everything the MRI service reads from its environment; see mri_service/README.md."""

    server: ServerSettings
    backend: str
    model_dir: Path
    batch_slices: int  # slices per model call
    max_concurrent_series: int  # series prepared or analysed at once
    max_queued_series: int  # series waiting beyond those; more are refused
    spool_dir: Path  # where uploads are spooled while they are analysed
    limits: IngestLimits
    rules: SelectionRules  # how the DCE series of a study are recognised
    torchserve: TorchServeSettings | None  # set only when backend is "torchserve"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads and validates every MRI_* variable; raises SettingsError naming the bad one."""
        env = os.environ if env is None else env
        server = ServerSettings.from_env(PREFIX, default_port=DEFAULT_PORT, env=env)
        backend = env_choice(env, f"{PREFIX}BACKEND", "embedded", BACKENDS)
        # Read even when unused, so that a typo fails now rather than on the day it matters.
        torchserve = _torchserve(env, required=backend == "torchserve")
        return cls(
            server=server,
            backend=backend,
            model_dir=_model_dir(env),
            batch_slices=env_int(env, f"{PREFIX}BATCH_SLICES", 16, minimum=1, maximum=1024),
            max_concurrent_series=env_int(
                env, f"{PREFIX}MAX_CONCURRENT_SERIES", 2, minimum=1, maximum=64
            ),
            max_queued_series=env_int(env, f"{PREFIX}MAX_QUEUED_SERIES", 8, minimum=0),
            spool_dir=_spool_dir(env),
            limits=_limits(env),
            rules=_rules(env),
            torchserve=torchserve if backend == "torchserve" else None,
        )


def _model_dir(env: Mapping[str, str]) -> Path:
    name = f"{PREFIX}MODEL_DIR"
    raw = env_str(env, name, "")
    path = Path(raw).expanduser().absolute() if raw else DEFAULT_MODEL_DIR
    if not path.is_dir():
        where = repr(raw) if raw else "the shipped demo model set"
        raise SettingsError(f"{name}: {where} is not a directory holding an MRI model set")
    return path


def _spool_dir(env: Mapping[str, str]) -> Path:
    name = f"{PREFIX}SPOOL_DIR"
    raw = env_str(env, name, "")
    path = Path(raw).expanduser().absolute() if raw else Path(tempfile.gettempdir())
    if not path.is_dir():
        raise SettingsError(f"{name}: {raw!r} is not an existing directory")
    return path


def _limits(env: Mapping[str, str]) -> IngestLimits:
    d = IngestLimits()
    p = PREFIX
    limits = IngestLimits(
        max_upload_bytes=env_int(
            env, f"{p}MAX_UPLOAD_BYTES", d.max_upload_bytes, minimum=1, maximum=64 * GIB
        ),
        max_entries=env_int(env, f"{p}MAX_ZIP_ENTRIES", d.max_entries, minimum=5),
        max_uncompressed_bytes=env_int(
            env, f"{p}MAX_UNCOMPRESSED_BYTES", d.max_uncompressed_bytes, minimum=1
        ),
        max_entry_bytes=env_int(
            env, f"{p}MAX_ENTRY_BYTES", d.max_entry_bytes, minimum=1, maximum=4 * GIB
        ),
        max_compression_ratio=env_float(
            env, f"{p}MAX_COMPRESSION_RATIO", d.max_compression_ratio, minimum=1.0
        ),
        min_slices=env_int(env, f"{p}MIN_SLICES", d.min_slices, minimum=1),
        max_slices=env_int(env, f"{p}MAX_SLICES", d.max_slices, minimum=1, maximum=100_000),
        max_image_side=env_int(env, f"{p}MAX_IMAGE_SIDE", d.max_image_side, minimum=32),
    )
    if limits.min_slices > limits.max_slices:
        raise SettingsError(f"{p}MIN_SLICES must not exceed {p}MAX_SLICES")
    return limits


def _rules(env: Mapping[str, str]) -> SelectionRules:
    dynamic = env_str(env, f"{PREFIX}DCE_SERIES_PATTERN", DEFAULT_DYNAMIC)
    excluded = env_str(env, f"{PREFIX}EXCLUDED_SERIES_PATTERN", DEFAULT_EXCLUDED)
    try:
        return SelectionRules(dynamic=dynamic, excluded=excluded)
    except ValueError as exc:
        raise SettingsError(
            f"{PREFIX}DCE_SERIES_PATTERN / EXCLUDED_SERIES_PATTERN: {exc}"
        ) from None


def _torchserve(env: Mapping[str, str], *, required: bool) -> TorchServeSettings:
    name = f"{PREFIX}TORCHSERVE_ADDRESS"
    address = env_str(env, name, "")
    if required and not address:
        raise SettingsError(
            f"{name} is required when {PREFIX}BACKEND=torchserve (host:port of its gRPC API)"
        )
    if address and ":" not in address:
        raise SettingsError(
            f"{name} must be host:port (gRPC port, 7070 by default), got {address!r}"
        )
    return TorchServeSettings(
        address=address,
        inference_key=env_secret(env, f"{PREFIX}TORCHSERVE_INFERENCE_KEY"),
        model_prefix=env_str(env, f"{PREFIX}TORCHSERVE_MODEL_PREFIX", "mri-"),
        timeout_s=env_float(
            env, f"{PREFIX}TORCHSERVE_TIMEOUT_SECONDS", 30.0, minimum=0.01, maximum=3600.0
        ),
    )


__all__ = ["MIB", "Settings", "TorchServeSettings"]
