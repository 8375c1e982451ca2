"""The model card written beside every exported skin model and read by the service."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

CARD_FILE = "model_card.json"
SIGNATURE_NAME = "serving_default"
INPUT_KEY = "images"
OUTPUT_KEY = "probabilities"
CLINICAL_WARNING = "Demo model trained on generated images: not for clinical use."


@dataclass(frozen=True)
class ModelCard:
    """What a person and the service need to know about one exported model.

    The model directory holds TF Serving's layout: `<model_dir>/<version>/saved_model.pb`
    with this card at `<model_dir>/model_card.json` (and a readable MODEL_CARD.md).
    """

    name: str
    version: int
    labels: tuple[str, ...]
    input_size: int
    data: str  # where the training data came from, e.g. "generated (seed 1, 3000 images)"
    demo_model: bool  # True when trained on generated data: never for clinical use
    trained_on: str  # ISO date
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. {"accuracy": 0.93}
    confusion_matrix: tuple[tuple[int, ...], ...] = ()  # rows: true label, columns: predicted
    evaluation: str = ""  # what the metrics were measured on
    training: dict[str, str | int | float] = field(default_factory=dict)  # epochs, seed, …
    signature_name: str = SIGNATURE_NAME
    input_key: str = INPUT_KEY
    output_key: str = OUTPUT_KEY

    @property
    def warning(self) -> str:
        """Returns the clinical-use warning for demo models, or ""."""
        return CLINICAL_WARNING if self.demo_model else ""

    def save(self, model_dir: Path) -> None:
        """Writes the card as JSON into model_dir."""
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / CARD_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def load_model_card(model_dir: Path) -> ModelCard:
    """Reads the card of the model in model_dir.

    Raises:
        FileNotFoundError: there is no card.
        ValueError: the card is malformed.
    """
    raw = json.loads((model_dir / CARD_FILE).read_text())
    try:
        raw["labels"] = tuple(raw["labels"])
        raw["confusion_matrix"] = tuple(tuple(row) for row in raw.get("confusion_matrix", ()))
        return ModelCard(**raw)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed model card in {model_dir}: {exc}") from None


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
