"""The toy model: classifies an image's dominant colour with a small numpy network."""

from __future__ import annotations

import time

import numpy as np

from servicekit.backend import ModelInfo
from servicekit.errors import ModelNotReady
from tests.toy_service.domain import INPUT_SIZE, LABELS


class ToyBackend:
    """A two-layer network whose weights make each output follow one colour channel."""

    def __init__(self, *, delay_seconds: float = 0.0, hidden: int = 256) -> None:
        rng = np.random.default_rng(7)
        # Hidden units are positive mixes of the per-channel means and the read-out is the
        # mixing's pseudo-inverse, so the network does a real model's matrix work and still
        # answers with the dominant colour.
        channel_of_feature = np.tile(np.arange(3), INPUT_SIZE * INPUT_SIZE)
        channel_mean = np.eye(3, dtype=np.float32)[channel_of_feature] / (INPUT_SIZE**2)
        mixing = np.abs(rng.normal(1.0, 0.5, (3, hidden))).astype(np.float32)
        self._w1 = channel_mean @ mixing
        self._w2 = np.linalg.pinv(mixing).astype(np.float32) * 20.0
        self._delay = delay_seconds
        self._loaded = False

    def load(self) -> None:
        """Marks the model as loaded (its weights are built in __init__)."""
        self._loaded = True

    def ready(self) -> bool:
        """Returns True once loaded."""
        return self._loaded

    def info(self) -> ModelInfo:
        """Returns the toy model's description."""
        return ModelInfo(
            name="toy-colour",
            version="1",
            labels=LABELS,
            input_height_px=INPUT_SIZE,
            input_width_px=INPUT_SIZE,
            input_channels=3,
            backend="embedded",
            demo_model=True,
            description="Test-only model: dominant colour of an image.",
        )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Returns class probabilities, one row per image."""
        if not self._loaded:
            raise ModelNotReady("the toy model is not loaded")
        if self._delay:
            time.sleep(self._delay)
        flat = batch.reshape(len(batch), -1)
        hidden = np.maximum(flat @ self._w1, 0.0)
        logits = hidden @ self._w2
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return probs
