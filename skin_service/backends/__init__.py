"""Model-server backends of the skin service, one small class each, chosen by SKIN_BACKEND."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from servicekit.backend import Backend
from servicekit.classifier.backends import choose_backend
from skin_service.settings import Settings

MODEL_DIR_SETTING = "SKIN_MODEL_DIR"


def build_backend(settings: Settings) -> Backend:
    """Returns the backend SKIN_BACKEND names, not loaded yet."""
    return choose_backend(settings, _BUILDERS)


def _embedded(settings: Settings) -> Backend:
    from skin_service.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(settings.model_dir)


def _tfserving(settings: Settings) -> Backend:
    from skin_service.backends.tfserving import TfServingBackend

    if settings.tfserving is None:  # Settings sets it whenever the backend is tfserving
        raise ValueError("tfserving settings are missing")
    return TfServingBackend(settings.model_dir, settings.tfserving)


# Imports stay inside the builders: each backend pulls in its own client libraries.
_BUILDERS: Mapping[str, Callable[[Settings], Backend]] = {
    "embedded": _embedded,
    "tfserving": _tfserving,
}
