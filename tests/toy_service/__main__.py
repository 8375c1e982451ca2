"""Runs the test-only toy service: `python -m tests.toy_service` (settings with prefix TOY_)."""

from __future__ import annotations

import asyncio
import os
import sys

from servicekit.logging_setup import configure_logging
from servicekit.server import serve
from servicekit.settings import (
    BatcherSettings,
    ServerSettings,
    SettingsError,
    env_float,
    env_int,
)
from tests.toy_service.model import ToyBackend
from tests.toy_service.servicer import ToyDiagnosisServicer, binding


def main() -> int:
    """Serves until SIGTERM; returns the exit code."""
    try:
        settings = ServerSettings.from_env("TOY_", default_port=50099)
        batcher_settings = BatcherSettings.from_env("TOY_")
        delay = env_float(os.environ, "TOY_DELAY_MS", 0.0, minimum=0.0) / 1000
        hidden = env_int(os.environ, "TOY_HIDDEN_UNITS", 256, minimum=3, maximum=65536)
    except SettingsError as exc:
        print(f"toy: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    backend = ToyBackend(delay_seconds=delay, hidden=hidden)
    servicer = ToyDiagnosisServicer(backend, batcher_settings)
    asyncio.run(serve(settings, [binding(servicer)], lifecycle=servicer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
