"""The model card of an MRI model set (two slice models): written by training, read by serving."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mri_service.domain import MODEL_CHANNELS, MODEL_NAMES

CARD_FILE = "model_card.json"
MARKDOWN_CARD_FILE = "MODEL_CARD.md"
CLINICAL_WARNING = "Demo models trained on generated phantom series: not for clinical use."


def weights_file(model_name: str) -> str:
    """Returns the file name of a model's weights (a torch state_dict) inside a model set."""
    return f"{model_name}.pt"


@dataclass(frozen=True)
class ModelCard:
    """What a person and the service need to know about one model set.

    A model set directory holds `single.pt`, `scantype.pt` (state_dicts of
    `mri_service.model.SliceClassifier`), this card as `model_card.json` and a
    readable `MODEL_CARD.md`. Both models share width, input size and threshold.
    """

    name: str
    version: int
    width: float  # the width multiplier of the VGG19 layout; 1.0 is the full network
    input_size: int  # model input is (C, input_size, input_size)
    threshold: float  # a slice probability at or above it is positive for that model
    data: str  # where the training data came from
    demo_model: bool  # True when trained on generated data: never for clinical use
    trained_on: str  # ISO date
    # model name ("single", "scantype", "fused") -> metric name -> value, slice level
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    evaluation: str = ""  # what the metrics were measured on
    training: dict[str, str | int | float] = field(default_factory=dict)  # command, seed, …

    @property
    def warning(self) -> str:
        """Returns the clinical-use warning for demo models, or ""."""
        return CLINICAL_WARNING if self.demo_model else ""

    def in_channels(self, model_name: str) -> int:
        """Returns the input channels of one of the two models."""
        return MODEL_CHANNELS[model_name]

    def save(self, model_dir: Path) -> None:
        """Writes the card as JSON into model_dir."""
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / CARD_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def load_model_card(model_dir: Path) -> ModelCard:
    """Reads the card of the model set in model_dir.

    Raises:
        FileNotFoundError: there is no card.
        ValueError: the card is malformed, or a weights file it implies is missing.
    """
    raw = json.loads((model_dir / CARD_FILE).read_text())
    try:
        card = ModelCard(**raw)
    except TypeError as exc:
        raise ValueError(f"malformed model card in {model_dir}: {exc}") from None
    if card.input_size % 32 != 0:
        raise ValueError(f"model card input_size {card.input_size} is not a multiple of 32")
    for name in MODEL_NAMES:
        if not (model_dir / weights_file(name)).is_file():
            raise ValueError(f"model set {model_dir.name} has no {weights_file(name)}")
    return card
