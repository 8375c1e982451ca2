"""Runs the gateway: `python -m gateway`, configured by GATEWAY_* environment variables."""

from __future__ import annotations

import asyncio
import sys

from gateway.router import Router
from gateway.servicer import build_bindings
from gateway.settings import GatewaySettings
from servicekit.logging_setup import configure_logging
from servicekit.server import serve
from servicekit.settings import SettingsError


def main() -> int:
    """Reads the settings, sets up logging and serves until SIGTERM; 2 on a bad setting."""
    try:
        settings = GatewaySettings.from_env()
        router = Router(settings)
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.server)
    asyncio.run(serve(settings.server, build_bindings(router), lifecycle=router))
    return 0


if __name__ == "__main__":
    sys.exit(main())
