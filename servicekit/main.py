"""The `python -m <service>` bootstrap: settings, logging, build, serve, and the exit code."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from servicekit.errors import MedimgError
from servicekit.logging_setup import configure_logging
from servicekit.server import Lifecycle, ServiceBinding, serve
from servicekit.settings import ServerSettings, SettingsError

T = TypeVar("T")


class ServedSettings(Protocol):
    """Settings of a gRPC service: whatever else they hold, how its server listens."""

    @property
    def server(self) -> ServerSettings:
        """How the service's server listens, logs and shuts down."""
        ...


SettingsT = TypeVar("SettingsT", bound=ServedSettings)
# What a service hosts once its settings are read: its gRPC services and their lifecycle.
Build = Callable[[SettingsT], tuple[Sequence[ServiceBinding], Lifecycle]]


def run_with_settings(name: str, read_settings: Callable[[], T], run: Callable[[T], int]) -> int:
    """Returns run(settings)'s exit code, or 2 after one line `name: problem` on a bad setting.

    One line on stderr and no traceback: what an operator reads in `kubectl logs` or
    under `medimg up`, naming the variable to fix.
    """
    try:
        settings = read_settings()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    return run(settings)


def run_server(name: str, read_settings: Callable[[], SettingsT], build: Build[SettingsT]) -> int:
    """Serves what build returns until SIGTERM; 2 on a bad setting, 1 when it cannot start.

    Logging is set up from the settings before build runs, so build may log. A start-up
    failure is one line, `name: cannot start: …`, with no traceback.
    """

    def serve_built(settings: SettingsT) -> int:
        configure_logging(settings.server)
        try:
            bindings, lifecycle = build(settings)
            asyncio.run(serve(settings.server, bindings, lifecycle=lifecycle))
        except (MedimgError, OSError) as exc:
            # Models that cannot load or a port that is taken: one line, no traceback.
            print(f"{name}: cannot start: {exc}", file=sys.stderr)
            return 1
        return 0

    return run_with_settings(name, read_settings, serve_built)
