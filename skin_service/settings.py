"""The skin service's settings, read once from SKIN_* environment variables and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicekit.classifier.settings import ClassifierSettings, SettingsSpec
from servicekit.settings import SettingsError, env_float, env_int, env_str

PREFIX = "SKIN_"
DEFAULT_PORT = 50061
BACKENDS = ("embedded", "tfserving")
# The demo model shipped inside the package, so that `python -m skin_service` works as is.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "skin-demo"
SPEC = SettingsSpec(
    prefix=PREFIX,
    default_port=DEFAULT_PORT,
    backends=BACKENDS,
    default_model_dir=DEFAULT_MODEL_DIR,
    missing_model="train it with `medimg train skin` (skin_service/README.md)",
)


@dataclass(frozen=True)
class TfServingSettings:
    """Where TensorFlow Serving runs and which model, version and signature to call."""

    address: str
    model_name: str
    model_version: int | None  # None: the latest version TF Serving has loaded
    signature_name: str
    timeout_s: float


@dataclass(frozen=True)
class Settings(ClassifierSettings):
    """Everything the skin service reads from its environment; see skin_service/README.md."""

    tfserving: TfServingSettings | None = None  # set only when backend is "tfserving"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads and validates every SKIN_* variable; raises SettingsError naming the bad one."""
        env = os.environ if env is None else env
        common = SPEC.read(env)
        # Read even when unused, so that a typo fails now rather than on the day it matters.
        tfserving = _tfserving(env, required=common.backend == "tfserving")
        return cls(**vars(common), tfserving=tfserving if common.backend == "tfserving" else None)


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
