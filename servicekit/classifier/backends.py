"""Backends of a classifier: one chosen by setting, and a base that loads a carded model once."""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import numpy as np

from servicekit.backend import Backend, ModelInfo
from servicekit.batcher import PredictFn
from servicekit.classifier.card import ModelCard
from servicekit.classifier.domain import ImageDomain
from servicekit.classifier.settings import ClassifierSettings
from servicekit.errors import ModelNotReady

logger = logging.getLogger(__name__)

CardT = TypeVar("CardT", bound=ModelCard)
SettingsT = TypeVar("SettingsT", bound=ClassifierSettings)


def choose_backend(
    settings: SettingsT, builders: Mapping[str, Callable[[SettingsT], Backend]]
) -> Backend:
    """Returns the backend the BACKEND setting names, built but not loaded.

    Each builder imports its own backend module, so a service loads only the client
    libraries of the backend it runs (TensorFlow, torch, TF Serving's API, …).
    """
    return builders[settings.backend](settings)


def model_info(card: ModelCard, domain: ImageDomain, *, version: int, backend: str) -> ModelInfo:
    """Returns the description of the model a backend serves, from its card."""
    description = f"Classifies {domain.subject} as {', '.join(card.labels)}; data: {card.data}."
    if card.warning:
        description = f"{description} {card.warning}"
    return ModelInfo(
        name=card.name,
        version=str(version),
        labels=card.labels,
        input_height_px=card.input_size,
        input_width_px=card.input_size,
        input_channels=domain.channels,
        backend=backend,
        demo_model=card.demo_model,
        description=description,
    )


class CardBackend(abc.ABC, Generic[CardT]):
    """A Backend for the model in a folder with a model card, loaded once under a lock.

    A subclass names its card type, domain and MODEL_DIR setting, and says in `open`
    how its model is loaded; the card is read and checked first. `predict` runs what
    `open` returned; `info` describes the model from the card.
    """

    name: ClassVar[str] = "embedded"
    card_type: type[CardT]
    domain: ImageDomain
    setting: str  # the MODEL_DIR variable, named in every message about the folder

    def __init__(self, model_dir: Path) -> None:
        self._model_dir = model_dir
        self._lock = threading.Lock()
        self._predict: PredictFn | None = None
        self._info: ModelInfo | None = None

    @abc.abstractmethod
    def open(self, card: CardT) -> tuple[PredictFn, int]:
        """Loads the model the card describes; returns batch -> scores and its version.

        Raises:
            ModelNotReady: the model cannot be loaded or is unlike its card.
        """

    def load(self) -> None:
        """Reads the card and loads the model once; later calls return at once."""
        with self._lock:
            if self._info is not None:
                return
            card = self.card_type.read(self._model_dir, setting=self.setting)
            predict, version = self.open(card)
            self._predict = predict
            self._info = model_info(card, self.domain, version=version, backend=self.name)
            logger.info("%s backend: %s version %d ready", self.name, card.name, version)

    def ready(self) -> bool:
        """Returns True once the model is loaded."""
        return self._info is not None

    def info(self) -> ModelInfo:
        """Returns the description of the loaded model."""
        if self._info is None:
            raise ModelNotReady(f"the {self.domain.disease} model is not loaded yet")
        return self._info

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Returns the probability of each label for each preprocessed input of the batch."""
        if self._predict is None:
            raise ModelNotReady(f"the {self.domain.disease} model is not loaded yet")
        return self._predict(batch)
