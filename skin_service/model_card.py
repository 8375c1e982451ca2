"""The skin model's card: servicekit's, with the SavedModel signature TF Serving serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from servicekit.classifier import card

CARD_FILE = card.CARD_FILE
SIGNATURE_NAME = "serving_default"
INPUT_KEY = "images"
OUTPUT_KEY = "probabilities"
CLINICAL_WARNING = "Demo model trained on generated images: not for clinical use."


@dataclass(frozen=True)
class ModelCard(card.ModelCard):
    """What a person and the service need to know about one exported skin model.

    The model directory holds TF Serving's layout: `<model_dir>/<version>/saved_model.pb`
    with this card at `<model_dir>/model_card.json` (and a readable MODEL_CARD.md).
    """

    CLINICAL_WARNING: ClassVar[str] = CLINICAL_WARNING

    signature_name: str = SIGNATURE_NAME
    input_key: str = INPUT_KEY
    output_key: str = OUTPUT_KEY

    def details(self) -> Sequence[str]:
        """Returns the Markdown lines on the signature's input, output and files."""
        size = self.input_size
        return (
            f"- Input: `{self.input_key}`, float32 [batch, {size}, {size}, 3], "
            "RGB in [0, 1] (skin_service.domain.preprocess: centre square, resized)",
            f"- Output: `{self.output_key}`, float32 [batch, {len(self.labels)}], softmax",
            f"- Signature: `{self.signature_name}`; files: `<version>/saved_model.pb` "
            f"(TF Serving layout), `{CARD_FILE}`",
        )


load_model_card = ModelCard.load


def latest_version(model_dir: Path) -> int:
    """Returns the highest numeric version folder under model_dir, as TF Serving picks it.

    Raises:
        FileNotFoundError: there is no version folder with a saved_model.pb.
    """
    versions = [
        int(child.name)
        for child in model_dir.iterdir()
        if child.name.isdigit() and (child / "saved_model.pb").is_file()
    ] if model_dir.is_dir() else []  # fmt: skip
    if not versions:
        raise FileNotFoundError(f"no SavedModel version folder under {model_dir}")
    return max(versions)
