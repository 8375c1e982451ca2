"""Runs the test-only toy service: `python -m tests.toy_service` (settings with prefix TOY_)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicekit.backend import Backend
from servicekit.classifier.main import run
from servicekit.classifier.settings import ClassifierSettings, SettingsSpec
from servicekit.settings import env_float, env_int
from tests.toy_service.domain import TOY
from tests.toy_service.model import ToyBackend

SPEC = SettingsSpec(
    prefix="TOY_",
    default_port=50099,
    backends=("embedded",),
    # The toy's model is built from code in this package: there is no file to find.
    default_model_dir=Path(__file__).resolve().parent,
    missing_model="the toy builds its model in code",
)


@dataclass(frozen=True)
class Settings(ClassifierSettings):
    """The kit's settings and the toy's two knobs, a delay and the network's width."""

    delay_s: float = 0.0
    hidden: int = 256

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads every TOY_* variable; SettingsError names a bad one."""
        env = os.environ if env is None else env
        return cls(
            **vars(SPEC.read(env)),
            delay_s=env_float(env, "TOY_DELAY_MS", 0.0, minimum=0.0) / 1000,
            hidden=env_int(env, "TOY_HIDDEN_UNITS", 256, minimum=3, maximum=65536),
        )


def build_backend(settings: Settings) -> Backend:
    """Returns the toy network with the settings' delay and width."""
    return ToyBackend(delay_seconds=settings.delay_s, hidden=settings.hidden)


if __name__ == "__main__":
    sys.exit(run(TOY, Settings.from_env, build_backend))
