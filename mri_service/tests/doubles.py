"""A slice-model double for the MRI servicer's tests and the web tier's series stack."""

from __future__ import annotations

import threading

import numpy as np

from mri_service import domain
from servicekit.backend import ModelInfo


class MeanBackend:
    """A backend double: a slice's probability is its mean intensity / 255; can fail or hold."""

    def __init__(self, channels: int, input_size: int) -> None:
        self.channels = channels
        self.input_size = input_size
        self.batch_sizes: list[int] = []
        self.error: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()

    def load(self) -> None:
        pass

    def ready(self) -> bool:
        return True

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=f"double-{self.channels}",
            version="3",
            labels=("tumour",),
            input_height_px=self.input_size,
            input_width_px=self.input_size,
            input_channels=self.channels,
            backend="double",
            demo_model=True,
        )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait(10)
        if self.error is not None:
            raise self.error
        if batch.shape[0] > 1:  # the warm-up batch is one blank slice
            self.batch_sizes.append(batch.shape[0])
        scores: np.ndarray = batch.mean(axis=(1, 2, 3)) / 255.0
        return scores.reshape(-1, 1).astype(np.float32)


def mean_backends(input_size: int) -> dict[str, MeanBackend]:
    """Returns one double per slice model, at the given input size."""
    return {
        name: MeanBackend(domain.MODEL_CHANNELS[name], input_size) for name in domain.MODEL_NAMES
    }
