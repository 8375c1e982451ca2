"""The `embedded` backend: runs the SavedModel in the service's own process."""

from __future__ import annotations

from servicekit.classifier.savedmodel import SavedModelBackend
from skin_service.backends import MODEL_DIR_SETTING
from skin_service.domain import SKIN
from skin_service.model_card import ModelCard


class EmbeddedBackend(SavedModelBackend[ModelCard]):
    """Loads the latest version under SKIN_MODEL_DIR with `tf.saved_model.load`."""

    card_type = ModelCard
    domain = SKIN
    setting = MODEL_DIR_SETTING
