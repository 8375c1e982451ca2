"""The skin service's settings, read once from SKIN_* environment variables and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicekit.images import ImageLimits
from servicekit.settings import (
    MIB,
    BatcherSettings,
    ServerSettings,
    SettingsError,
    env_choice,
    env_float,
    env_int,
    env_str,
)

PREFIX = "SKIN_"
DEFAULT_PORT = 50061
BACKENDS = ("embedded", "tfserving")
# The demo model shipped inside the package, so that `python -m skin_service` works as is.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "skin-demo"


@dataclass(frozen=True)
class TfServingSettings:
    """Where TensorFlow Serving runs and which model, version and signature to call."""

    address: str
    model_name: str
    model_version: int | None  # None: the latest version TF Serving has loaded
    signature_name: str
    timeout_s: float


@dataclass(frozen=True)
class Settings:
    """Everything the skin service reads from its environment; see skin_service/README.md."""

    server: ServerSettings
    batcher: BatcherSettings
    backend: str
    model_dir: Path
    image_limits: ImageLimits
    tfserving: TfServingSettings | None  # set only when backend is "tfserving"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads and validates every SKIN_* variable; raises SettingsError naming the bad one."""
        env = os.environ if env is None else env
        server = ServerSettings.from_env(PREFIX, default_port=DEFAULT_PORT, env=env)
        backend = env_choice(env, f"{PREFIX}BACKEND", "embedded", BACKENDS)
        # Read even when unused, so that a typo fails now rather than on the day it matters.
        tfserving = _tfserving(env, required=backend == "tfserving")
        return cls(
            server=server,
            batcher=BatcherSettings.from_env(PREFIX, env=env),
            backend=backend,
            model_dir=_model_dir(env),
            image_limits=_image_limits(env, server.max_message_bytes),
            tfserving=tfserving if backend == "tfserving" else None,
        )


def _model_dir(env: Mapping[str, str]) -> Path:
    name = f"{PREFIX}MODEL_DIR"
    raw = env_str(env, name, "")
    path = Path(raw).expanduser().absolute() if raw else DEFAULT_MODEL_DIR
    if not path.is_dir():
        where = repr(raw) if raw else "the shipped demo model"
        raise SettingsError(f"{name}: {where} is not a directory holding a skin model")
    return path


def _image_limits(env: Mapping[str, str], max_message_bytes: int) -> ImageLimits:
    defaults = ImageLimits()
    max_bytes = env_int(
        env, f"{PREFIX}MAX_IMAGE_BYTES", defaults.max_bytes, minimum=1, maximum=2047 * MIB
    )
    if max_bytes > max_message_bytes:
        raise SettingsError(
            f"{PREFIX}MAX_IMAGE_BYTES ({max_bytes}) must not exceed "
            f"{PREFIX}MAX_MESSAGE_BYTES ({max_message_bytes}): a larger image could never arrive"
        )
    max_pixels = env_int(
        env, f"{PREFIX}MAX_IMAGE_PIXELS", defaults.max_pixels, minimum=1, maximum=1_000_000_000
    )
    return ImageLimits(max_bytes=max_bytes, max_pixels=max_pixels)


def _tfserving(env: Mapping[str, str], *, required: bool) -> TfServingSettings:
    name = f"{PREFIX}TFSERVING_ADDRESS"
    address = env_str(env, name, "")
    if required and not address:
        raise SettingsError(f"{name} is required when {PREFIX}BACKEND=tfserving (host:port)")
    if address and ":" not in address:
        raise SettingsError(
            f"{name} must be host:port (gRPC port, 8500 by default), got {address!r}"
        )
    version = env_int(env, f"{PREFIX}TFSERVING_MODEL_VERSION", 0, minimum=1)
    return TfServingSettings(
        address=address,
        model_name=env_str(env, f"{PREFIX}TFSERVING_MODEL_NAME", "skin"),
        model_version=version or None,
        signature_name=env_str(env, f"{PREFIX}TFSERVING_SIGNATURE", "serving_default"),
        timeout_s=env_float(
            env, f"{PREFIX}TFSERVING_TIMEOUT_SECONDS", 10.0, minimum=0.01, maximum=600.0
        ),
    )
