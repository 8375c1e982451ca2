"""Model-server backends of the skin service, one small class each, chosen by SKIN_BACKEND."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from servicekit.backend import Backend
from servicekit.classifier.backends import choose_backend
from servicekit.classifier.errors import ModelMismatch
from skin_service.model_card import ModelCard
from skin_service.settings import Settings

CHANNELS = 3
MODEL_DIR_SETTING = "SKIN_MODEL_DIR"

# A tensor's shape as a model server reports it; None for a dimension of any size.
Shape = tuple[int | None, ...]


def build_backend(settings: Settings) -> Backend:
    """Returns the backend SKIN_BACKEND names, not loaded yet."""
    # Both backends load TensorFlow, whose C++ start-up chatter bypasses `logging` and
    # would break JSON log lines; errors still show. Set before TensorFlow loads; an
    # operator's own value wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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


def check_signature(
    card: ModelCard,
    *,
    inputs: Mapping[str, tuple[str, Shape]],
    outputs: Mapping[str, tuple[str, Shape]],
) -> None:
    """Checks that a signature takes and returns what the card promises.

    Args:
        card: the model card.
        inputs: the signature's inputs, as key -> (dtype name, shape).
        outputs: the signature's outputs, as key -> (dtype name, shape).

    Raises:
        ModelMismatch: a key is missing, or a dtype or shape differs.
    """
    size = card.input_size
    expected = {
        "input": (card.input_key, inputs, (None, size, size, CHANNELS)),
        "output": (card.output_key, outputs, (None, len(card.labels))),
    }
    for kind, (key, tensors, shape) in expected.items():
        if key not in tensors:
            raise ModelMismatch(
                f"signature {card.signature_name!r} has no {kind} {key!r} "
                f"(it has {', '.join(sorted(tensors)) or 'none'})"
            )
        dtype, actual = tensors[key]
        if dtype != "float32" or actual != shape:
            raise ModelMismatch(
                f"{kind} {key!r} of signature {card.signature_name!r} is {dtype} {_text(actual)}; "
                f"the model card expects float32 {_text(shape)}"
            )


def _text(shape: Shape) -> str:
    return "[" + ", ".join("None" if dim is None else str(dim) for dim in shape) + "]"
