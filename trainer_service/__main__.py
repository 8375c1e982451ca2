"""Runs the trainer service: `python -m trainer_service`, configured by TRAINER_* variables."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from servicekit.main import run_server
from servicekit.server import ServiceBinding
from trainer_service.service import Trainer
from trainer_service.servicer import bindings
from trainer_service.settings import Settings, retired_variables


def build(settings: Settings) -> tuple[Sequence[ServiceBinding], Trainer]:
    """Returns the trainer's services over one Trainer; warns of each retired variable set."""
    for name in retired_variables():
        logging.getLogger("trainer_service").warning(
            "%s is ignored: the trainer calls no gateway; gateways ask it for its models", name
        )
    trainer = Trainer(settings)
    return bindings(trainer), trainer


def main() -> int:
    """Serves until SIGTERM; returns 2 on a bad setting and 1 when the service cannot start."""
    return run_server("trainer", Settings.from_env, build)


if __name__ == "__main__":
    sys.exit(main())
