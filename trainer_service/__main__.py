"""Runs the trainer service: `python -m trainer_service`, configured by TRAINER_* variables."""

from __future__ import annotations

import asyncio
import logging
import sys

from servicekit.errors import MedimgError
from servicekit.logging_setup import configure_logging
from servicekit.server import serve
from servicekit.settings import SettingsError
from trainer_service.service import Trainer
from trainer_service.servicer import bindings
from trainer_service.settings import Settings, retired_variables


def main() -> int:
    """Serves until SIGTERM; returns 2 on a bad setting and 1 when the service cannot start."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"trainer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.server)
    for name in retired_variables():
        logging.getLogger("trainer_service").warning(
            "%s is ignored: the trainer calls no gateway; gateways ask it for its models", name
        )
    try:
        trainer = Trainer(settings)
        asyncio.run(serve(settings.server, bindings(trainer), lifecycle=trainer))
    except (MedimgError, OSError) as exc:
        print(f"trainer: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
