"""The trainer service's settings, read once from TRAINER_* environment variables and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicekit.images import ImageLimits
from servicekit.settings import (
    MIB,
    ServerSettings,
    SettingsError,
    env_int,
    env_str,
)

PREFIX = "TRAINER_"
DEFAULT_PORT = 50063
MAX_IMAGE_BYTES = 4 * MIB
MAX_IMAGE_PIXELS = 40_000_000
# Read by versions in which the trainer registered its models at the gateway; the gateway
# now asks the trainer (ListPublishedModels), so these are ignored, with a warning at start.
RETIRED_VARIABLES = tuple(
    f"{PREFIX}{name}"
    for name in (
        "GATEWAY_ADDR",
        "ADVERTISE_ADDR",
        "GATEWAY_ADMIN_TOKEN",
        "GATEWAY_ADMIN_TOKEN_FILE",
        "GATEWAY_TIMEOUT_SECONDS",
        "REREGISTER_SECONDS",
    )
)


@dataclass(frozen=True)
class Settings:
    """Everything the trainer reads from its environment; see trainer_service/README.md."""

    server: ServerSettings
    data_dir: Path
    max_concurrent_trainings: int
    max_examples_per_label: int
    image_size: int
    train_threads: int
    image_limits: ImageLimits

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
        )


def retired_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """Returns the retired TRAINER_* variables that env still sets."""
    env = os.environ if env is None else env
    return [name for name in RETIRED_VARIABLES if name in env]
