"""The trainer service's settings, read once from TRAINER_* environment variables and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from servicekit.images import ImageLimits
from servicekit.settings import (
    MIB,
    ServerSettings,
    SettingsError,
    env_float,
    env_int,
    env_secret,
    env_str,
)

PREFIX = "TRAINER_"
DEFAULT_PORT = 50063
MAX_IMAGE_BYTES = 4 * MIB
MAX_IMAGE_PIXELS = 40_000_000


@dataclass(frozen=True)
class Settings:
    """Everything the trainer reads from its environment; see trainer_service/README.md."""

    server: ServerSettings
    data_dir: Path
    gateway_addr: str
    advertise_addr: str
    gateway_timeout_s: float
    # Seconds between registrations of every published model at every gateway replica; 0: never.
    reregister_every_s: float
    max_concurrent_trainings: int
    max_examples_per_label: int
    image_size: int
    train_threads: int
    image_limits: ImageLimits
    gateway_admin_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads and validates every TRAINER_* variable; raises SettingsError naming the bad one."""
        env = os.environ if env is None else env
        server = ServerSettings.from_env(PREFIX, default_port=DEFAULT_PORT, env=env)
        max_image_bytes = env_int(
            env, f"{PREFIX}MAX_IMAGE_BYTES", MAX_IMAGE_BYTES, minimum=1, maximum=2047 * MIB
        )
        if max_image_bytes > server.max_message_bytes:
            raise SettingsError(
                f"{PREFIX}MAX_IMAGE_BYTES ({max_image_bytes}) must not exceed "
                f"{PREFIX}MAX_MESSAGE_BYTES ({server.max_message_bytes})"
            )
        return cls(
            server=server,
            data_dir=Path(env_str(env, f"{PREFIX}DATA_DIR", "var/trainer")).absolute(),
            gateway_addr=_address(env, f"{PREFIX}GATEWAY_ADDR", "127.0.0.1:50051"),
            advertise_addr=_address(
                env, f"{PREFIX}ADVERTISE_ADDR", f"127.0.0.1:{server.port or DEFAULT_PORT}"
            ),
            gateway_timeout_s=env_float(
                env, f"{PREFIX}GATEWAY_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=600.0
            ),
            reregister_every_s=env_float(
                env, f"{PREFIX}REREGISTER_SECONDS", 30.0, minimum=0.0, maximum=86400.0
            ),
            max_concurrent_trainings=env_int(
                env, f"{PREFIX}MAX_CONCURRENT_TRAININGS", 1, minimum=1, maximum=64
            ),
            max_examples_per_label=env_int(
                env, f"{PREFIX}MAX_EXAMPLES_PER_LABEL", 500, minimum=2, maximum=100_000
            ),
            image_size=env_int(env, f"{PREFIX}IMAGE_SIZE", 64, minimum=32, maximum=256),
            # Training and inference share the machine's cores; a fixed count also keeps
            # the float reductions, and so the metrics, the same from run to run.
            train_threads=env_int(env, f"{PREFIX}TRAIN_THREADS", 2, minimum=1, maximum=256),
            image_limits=ImageLimits(
                max_bytes=max_image_bytes,
                max_pixels=env_int(
                    env,
                    f"{PREFIX}MAX_IMAGE_PIXELS",
                    MAX_IMAGE_PIXELS,
                    minimum=1,
                    maximum=1_000_000_000,
                ),
            ),
            gateway_admin_token=env_secret(env, f"{PREFIX}GATEWAY_ADMIN_TOKEN"),
        )


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    address = env_str(env, name, default)
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingsError(f"{name} must be host:port, got {address!r}")
    return address
