"""Model-server backends of the MRI service: one small class each, chosen by MRI_BACKEND.

A model set is two slice models (`single`, `scantype`); each is served by its own
`Backend` instance, so the servicer holds a mapping model name -> Backend and never
knows which model server answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from mri_service.domain import MODEL_CHANNELS, MODEL_NAMES
from mri_service.model_card import ModelCard, load_model_card
from mri_service.settings import Settings
from servicekit.backend import Backend, ModelInfo
from servicekit.errors import ModelNotReady

# What the service returns for a slice: one probability, no class labels beyond it.
SLICE_LABELS: tuple[str, ...] = ("tumour",)


def build_backends(settings: Settings) -> dict[str, Backend]:
    """Returns one backend per model of the set that MRI_BACKEND names, not loaded yet."""
    return {name: _BUILDERS[settings.backend](settings, name) for name in MODEL_NAMES}


def _embedded(settings: Settings, model_name: str) -> Backend:
    from mri_service.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(settings.model_dir, model_name)


def _torchserve(settings: Settings, model_name: str) -> Backend:
    from mri_service.backends.torchserve import TorchServeBackend

    if settings.torchserve is None:  # Settings sets it whenever the backend is torchserve
        raise ValueError("torchserve settings are missing")
    return TorchServeBackend(settings.model_dir, model_name, settings.torchserve)


# Imports stay inside the builders: each backend pulls in its own client libraries.
_BUILDERS: Mapping[str, Callable[[Settings, str], Backend]] = {
    "embedded": _embedded,
    "torchserve": _torchserve,
}


def read_card(model_dir: Path) -> ModelCard:
    """Returns the model card of MRI_MODEL_DIR.

    Raises:
        ModelNotReady: there is no card, or it cannot be read.
    """
    try:
        return load_model_card(model_dir)
    except FileNotFoundError:
        raise ModelNotReady("MRI_MODEL_DIR holds no model_card.json") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise ModelNotReady(f"the model set in MRI_MODEL_DIR is unusable: {exc}") from None


def model_info(card: ModelCard, model_name: str, backend: str) -> ModelInfo:
    """Returns the transport-free description of one model of the set."""
    return ModelInfo(
        name=f"{card.name}-{model_name}",
        version=str(card.version),
        labels=SLICE_LABELS,
        input_height_px=card.input_size,
        input_width_px=card.input_size,
        input_channels=MODEL_CHANNELS[model_name],
        backend=backend,
        demo_model=card.demo_model,
        description=card.warning,
    )
