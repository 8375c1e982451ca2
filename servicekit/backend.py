"""The `Backend` interface that hides a model server from a service's domain code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """Describes the model behind a backend, independent of any transport."""

    name: str
    version: str
    labels: tuple[str, ...]
    input_height_px: int
    input_width_px: int
    input_channels: int
    backend: str
    demo_model: bool
    description: str = ""


class Backend(Protocol):
    """Runs a model on a batch of preprocessed inputs.

    Implementations are small classes, one per model server (`embedded`,
    `tfserving`, `torchserve`), chosen by a setting; the servicer never knows which.
    """

    def load(self) -> None:
        """Loads the model or connects to its server.

        Raises:
            ModelNotReady: the model cannot be loaded or reached.
        """
        ...

    def ready(self) -> bool:
        """Returns True once `load` succeeded; feeds grpc.health.v1."""
        ...

    def info(self) -> ModelInfo:
        """Returns the description of the loaded model."""
        ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Returns one row of class probabilities per input of the batch.

        Args:
            batch: preprocessed inputs stacked on axis 0.

        Raises:
            BackendUnavailable: the model server cannot be reached.
            BackendTimeout: the model server did not answer in time.
        """
        ...
