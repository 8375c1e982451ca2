"""A classifier service's settings: server, batcher, backend, model folder and image limits."""

from __future__ import annotations

import os
import sys
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
    env_int,
    env_str,
)


@dataclass(frozen=True)
class SettingsSpec:
    """What differs from one classifier service's settings to the next."""

    prefix: str  # "SKIN_"
    default_port: int
    default_model_dir: Path  # the model served when MODEL_DIR is unset
    missing_model: str  # what to do when default_model_dir is absent, for the message
    backends: tuple[str, ...] = ("embedded",)  # BACKEND's choices; the first is the default

    @classmethod
    def plugin(cls, disease: str, *, port: int) -> SettingsSpec:
        """Returns the spec of a scaffolded service, which follows from its name.

        By the plug-in rules (medimg_cli.components): the package is `<disease>_service`,
        the prefix `<DISEASE>_`, and the demo model lives in the package's
        `models/<disease>-demo`. Call it from inside the package, which is imported then.
        """
        package = f"{disease}_service"
        folder = Path(str(sys.modules[package].__file__)).resolve().parent
        return cls(
            prefix=f"{disease.upper()}_",
            default_port=port,
            default_model_dir=folder / "models" / f"{disease}-demo",
            missing_model=f"write it with `python -m {package}.demo_model`, or train one",
        )

    def read(self, env: Mapping[str, str] | None = None) -> ClassifierSettings:
        """Reads and validates every variable with the prefix; SettingsError names a bad one."""
        env = os.environ if env is None else env
        server = ServerSettings.from_env(self.prefix, default_port=self.default_port, env=env)
        return ClassifierSettings(
            server=server,
            batcher=BatcherSettings.from_env(self.prefix, env=env),
            backend=env_choice(env, f"{self.prefix}BACKEND", self.backends[0], self.backends),
            model_dir=model_dir(env, self),
            image_limits=image_limits(env, self.prefix, server.max_message_bytes),
        )


@dataclass(frozen=True)
class ClassifierSettings:
    """Everything a classifier service reads from its environment; a service may add more."""

    server: ServerSettings
    batcher: BatcherSettings
    backend: str
    model_dir: Path
    image_limits: ImageLimits


def model_dir(env: Mapping[str, str], spec: SettingsSpec) -> Path:
    """Returns the absolute MODEL_DIR, or the default; SettingsError when it is no folder."""
    name = f"{spec.prefix}MODEL_DIR"
    raw = env_str(env, name, "")
    path = Path(raw).expanduser().absolute() if raw else spec.default_model_dir
    if path.is_dir():
        return path
    if raw:
        raise SettingsError(f"{name}: {raw!r} is not a directory holding a model")
    raise SettingsError(f"{name} is unset and the default model is missing: {spec.missing_model}")


def image_limits(env: Mapping[str, str], prefix: str, max_message_bytes: int) -> ImageLimits:
    """Returns MAX_IMAGE_BYTES and MAX_IMAGE_PIXELS; an image must fit in one message."""
    defaults = ImageLimits()
    max_bytes = env_int(
        env, f"{prefix}MAX_IMAGE_BYTES", defaults.max_bytes, minimum=1, maximum=2047 * MIB
    )
    if max_bytes > max_message_bytes:
        raise SettingsError(
            f"{prefix}MAX_IMAGE_BYTES ({max_bytes}) must not exceed "
            f"{prefix}MAX_MESSAGE_BYTES ({max_message_bytes}): a larger image could never arrive"
        )
    max_pixels = env_int(
        env, f"{prefix}MAX_IMAGE_PIXELS", defaults.max_pixels, minimum=1, maximum=1_000_000_000
    )
    return ImageLimits(max_bytes=max_bytes, max_pixels=max_pixels)
