"""Model-server backends of the skin service, one small class each, chosen by SKIN_BACKEND."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from servicekit.backend import Backend, ModelInfo
from servicekit.errors import ModelNotReady
from skin_service.errors import ModelMismatch
from skin_service.model_card import ModelCard, load_model_card
from skin_service.settings import Settings

CHANNELS = 3

# A tensor's shape as a model server reports it; None for a dimension of any size.
Shape = tuple[int | None, ...]


def build_backend(settings: Settings) -> Backend:
    """Returns the backend SKIN_BACKEND names, not loaded yet."""
    return _BUILDERS[settings.backend](settings)


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


def read_card(model_dir: Path) -> ModelCard:
    """Returns the model card of SKIN_MODEL_DIR.

    Raises:
        ModelNotReady: there is no card, or it cannot be read.
    """
    try:
        return load_model_card(model_dir)
    except FileNotFoundError:
        raise ModelNotReady("SKIN_MODEL_DIR holds no model_card.json") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise ModelNotReady(f"the model card in SKIN_MODEL_DIR is malformed: {exc}") from None


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


def model_info(card: ModelCard, *, version: int, backend: str) -> ModelInfo:
    """Returns the description of the model a backend serves, from its card."""
    description = f"Classifies a skin-lesion photo as {', '.join(card.labels)}; data: {card.data}."
    if card.warning:
        description = f"{description} {card.warning}"
    return ModelInfo(
        name=card.name,
        version=str(version),
        labels=card.labels,
        input_height_px=card.input_size,
        input_width_px=card.input_size,
        input_channels=CHANNELS,
        backend=backend,
        demo_model=card.demo_model,
        description=description,
    )
