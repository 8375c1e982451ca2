"""The `python -m <service>` bootstrap: settings, logging, backend, server, serve."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from servicekit.backend import Backend
from servicekit.classifier.domain import ImageDomain
from servicekit.classifier.servicer import ClassifierServicer, binding
from servicekit.classifier.settings import ClassifierSettings
from servicekit.errors import MedimgError
from servicekit.logging_setup import configure_logging
from servicekit.server import serve
from servicekit.settings import SettingsError

SettingsT = TypeVar("SettingsT", bound=ClassifierSettings)


def run(
    domain: ImageDomain,
    read_settings: Callable[[], SettingsT],
    build_backend: Callable[[SettingsT], Backend],
) -> int:
    """Serves until SIGTERM; returns 2 on a bad setting and 1 when the model cannot start.

    Either failure is one line on stderr, starting with the disease, with no traceback:
    what an operator reads in `kubectl logs` or under `medimg up`.
    """
    try:
        settings = read_settings()
    except SettingsError as exc:
        print(f"{domain.disease}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.server)
    # TensorFlow's C++ start-up chatter bypasses `logging` and would break JSON log lines;
    # errors still show. Set before a backend loads TensorFlow; an operator's value wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    servicer = ClassifierServicer(
        domain,
        build_backend(settings),
        batcher=settings.batcher,
        image_limits=settings.image_limits,
    )
    try:
        asyncio.run(serve(settings.server, [binding(servicer)], lifecycle=servicer))
    except (MedimgError, OSError) as exc:
        # A model that cannot load or a port that is taken: one line, no traceback.
        print(f"{domain.disease}: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
