"""The `embedded` backend: runs the SavedModel in the service's own process."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from servicekit.backend import ModelInfo
from servicekit.errors import ModelNotReady
from skin_service.backends import Shape, check_signature, model_info, read_card
from skin_service.model_card import ModelCard, latest_version

logger = logging.getLogger(__name__)


def _shape(spec: Any) -> Shape:
    return tuple(spec.shape.as_list())


class EmbeddedBackend:
    """Loads the latest version under the model directory with `tf.saved_model.load`.

    The directory has TF Serving's layout (`<dir>/<version>/saved_model.pb` and the
    card beside the versions), so the artifact served here is the one TF Serving serves.
    """

    def __init__(self, model_dir: Path) -> None:
        self._model_dir = model_dir
        self._lock = threading.Lock()
        self._card: ModelCard | None = None
        self._loaded: Any = None
        self._signature: Any = None
        self._info: ModelInfo | None = None

    def load(self) -> None:
        """Loads the model once; later calls return at once.

        Raises:
            ModelNotReady: no card, no version folder, or a signature unlike the card's.
        """
        with self._lock:
            if self._info is not None:
                return
            card = read_card(self._model_dir)
            try:
                version = latest_version(self._model_dir)
            except FileNotFoundError:
                raise ModelNotReady(
                    "SKIN_MODEL_DIR has no version folder with a saved_model.pb"
                ) from None
            try:
                loaded = tf.saved_model.load(str(self._model_dir / str(version)))
            except (OSError, ValueError, tf.errors.OpError) as exc:
                raise ModelNotReady(
                    f"the SavedModel version {version} cannot be loaded ({type(exc).__name__})"
                ) from exc
            if card.signature_name not in loaded.signatures:
                raise ModelNotReady(
                    f"the SavedModel has no signature {card.signature_name!r} "
                    f"(it has {', '.join(sorted(loaded.signatures)) or 'none'})"
                )
            signature = loaded.signatures[card.signature_name]
            _, input_specs = signature.structured_input_signature
            check_signature(
                card,
                inputs={k: (spec.dtype.name, _shape(spec)) for k, spec in input_specs.items()},
                outputs={
                    k: (spec.dtype.name, _shape(spec))
                    for k, spec in signature.structured_outputs.items()
                },
            )
            # Keep the loaded object alive: the signature's variables belong to it.
            self._loaded = loaded
            self._card, self._signature = card, signature
            self._info = model_info(card, version=version, backend="embedded")
            logger.info("loaded skin model %s version %d in process", card.name, version)

    def ready(self) -> bool:
        """Returns True once the model is loaded."""
        return self._info is not None

    def info(self) -> ModelInfo:
        """Returns the description of the loaded model."""
        if self._info is None:
            raise ModelNotReady("the skin model is not loaded yet")
        return self._info

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Returns the class probabilities of each preprocessed image of the batch."""
        if self._card is None:
            raise ModelNotReady("the skin model is not loaded yet")
        outputs = self._signature(**{self._card.input_key: tf.constant(batch, dtype=tf.float32)})
        probabilities: np.ndarray = outputs[self._card.output_key].numpy()
        return probabilities
