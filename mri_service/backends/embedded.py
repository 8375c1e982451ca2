"""The `embedded` backend: runs one slice model with torch in the service's own process."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from mri_service.backends import model_info, read_card
from mri_service.model import SliceClassifier, probabilities
from mri_service.model_card import ModelCard, weights_file
from servicekit.backend import ModelInfo
from servicekit.errors import ModelNotReady


def load_classifier(model_dir: Path, card: ModelCard, model_name: str) -> SliceClassifier:
    """Returns one model of the set with its weights, in eval mode.

    Raises:
        ModelNotReady: the weights file is missing or does not fit the card.
    """
    model = SliceClassifier(card.in_channels(model_name), width=card.width)
    path = model_dir / weights_file(model_name)
    try:
        # weights_only: a state_dict is plain tensors; never unpickle arbitrary objects.
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelNotReady(
            f"the {model_name} weights in MRI_MODEL_DIR cannot be loaded ({type(exc).__name__})"
        ) from exc
    return model.eval()


class EmbeddedBackend:
    """Loads one model of the set from MRI_MODEL_DIR and predicts in `inference_mode`.

    The weights file is the one the TorchServe archive packs, so both backends run
    the same network on the same numbers.
    """

    def __init__(self, model_dir: Path, model_name: str) -> None:
        self._model_dir = model_dir
        self._model_name = model_name
        self._lock = threading.Lock()
        self._model: SliceClassifier | None = None
        self._info: ModelInfo | None = None

    def load(self) -> None:
        """Loads the weights once; later calls return at once.

        Raises:
            ModelNotReady: no card, or weights that do not fit it.
        """
        with self._lock:
            if self._model is not None:
                return
            card = read_card(self._model_dir)
            self._model = load_classifier(self._model_dir, card, self._model_name)
            self._info = model_info(card, self._model_name, "embedded")

    def ready(self) -> bool:
        """Returns True once the weights are loaded."""
        return self._model is not None

    def info(self) -> ModelInfo:
        """Returns the description of the loaded model."""
        if self._info is None:
            raise ModelNotReady(f"the {self._model_name} model is not loaded")
        return self._info

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Returns float32 (N, 1) tumour probabilities for float32 (N, C, S, S) slices."""
        if self._model is None:
            raise ModelNotReady(f"the {self._model_name} model is not loaded")
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        return probabilities(self._model, tensor).numpy().reshape(-1, 1)
