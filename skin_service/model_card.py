"""The skin model's card: a SavedModel's (servicekit.classifier.savedmodel), with skin's words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from servicekit.classifier.card import CARD_FILE
from servicekit.classifier.savedmodel import (
    INPUT_KEY,
    OUTPUT_KEY,
    SIGNATURE_NAME,
    SavedModelCard,
    latest_version,
)

__all__ = [
    "CARD_FILE",
    "CLINICAL_WARNING",
    "INPUT_KEY",
    "OUTPUT_KEY",
    "SIGNATURE_NAME",
    "ModelCard",
    "latest_version",
    "load_model_card",
]

CLINICAL_WARNING = "Demo model trained on generated images: not for clinical use."


@dataclass(frozen=True)
class ModelCard(SavedModelCard):
    """What a person and the service need to know about one exported skin model.

    The model directory holds TF Serving's layout: `<model_dir>/<version>/saved_model.pb`
    with this card at `<model_dir>/model_card.json` (and a readable MODEL_CARD.md).
    """

    CLINICAL_WARNING: ClassVar[str] = CLINICAL_WARNING

    def details(self) -> Sequence[str]:
        """Returns the Markdown lines on the signature, naming skin's preprocessing."""
        first, *rest = super().details()
        return (f"{first} (skin_service.domain.preprocess: centre square, resized)", *rest)


load_model_card = ModelCard.load
