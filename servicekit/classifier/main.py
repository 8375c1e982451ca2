"""The `python -m <service>` bootstrap of a classifier: servicekit.main's, with its servicer."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from servicekit.backend import Backend
from servicekit.classifier.domain import ImageDomain
from servicekit.classifier.servicer import ClassifierServicer, binding
from servicekit.classifier.settings import ClassifierSettings
from servicekit.main import run_server
from servicekit.server import ServiceBinding

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

    def build(settings: SettingsT) -> tuple[Sequence[ServiceBinding], ClassifierServicer]:
        # TensorFlow's C++ start-up chatter bypasses `logging` and would break JSON log lines;
        # errors still show. Set before a backend loads TensorFlow; an operator's value wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        servicer = ClassifierServicer(
            domain,
            build_backend(settings),
            batcher=settings.batcher,
            image_limits=settings.image_limits,
        )
        return [binding(servicer)], servicer

    return run_server(domain.disease, read_settings, build)
