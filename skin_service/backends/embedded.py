"""The `embedded` backend: runs the SavedModel in the service's own process."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from servicekit.batcher import PredictFn
from servicekit.classifier.backends import CardBackend
from servicekit.errors import ModelNotReady
from skin_service.backends import MODEL_DIR_SETTING, Shape, check_signature
from skin_service.domain import SKIN
from skin_service.model_card import ModelCard, latest_version


def _shape(spec: Any) -> Shape:
    return tuple(spec.shape.as_list())


class EmbeddedBackend(CardBackend[ModelCard]):
    """Loads the latest version under the model directory with `tf.saved_model.load`.

    The directory has TF Serving's layout (`<dir>/<version>/saved_model.pb` and the
    card beside the versions), so the artifact served here is the one TF Serving serves.
    """

    card_type = ModelCard
    domain = SKIN
    setting = MODEL_DIR_SETTING

    def open(self, card: ModelCard) -> tuple[PredictFn, int]:
        """Loads the latest SavedModel and checks its signature against the card.

        Raises:
            ModelNotReady: no version folder, or a signature unlike the card's.
        """
        try:
            version = latest_version(self._model_dir)
        except FileNotFoundError:
            raise ModelNotReady(
                f"{MODEL_DIR_SETTING} has no version folder with a saved_model.pb"
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

        def predict(batch: np.ndarray) -> np.ndarray:
            outputs = signature(**{card.input_key: tf.constant(batch, dtype=tf.float32)})
            probabilities: np.ndarray = outputs[card.output_key].numpy()
            return probabilities

        # Keep the loaded object alive: the signature's variables belong to it.
        predict.loaded = loaded  # type: ignore[attr-defined]
        return predict, version
