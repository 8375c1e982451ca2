"""The small CPU-friendly image classifier, its preprocessing, and its files with a model card."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from servicekit.files import write_text_atomic

WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model_card.json"
ARCHITECTURE = "trainer-cnn-v1"
CLINICAL_WARNING = "User-trained model: not for clinical use."
# Images are stored a little larger than the model's input so that training can crop.
CROP_MARGIN = 1.125


class SmallCnn(nn.Module):
    """Four conv blocks and global average pooling: a few hundred kB, fast on two cores."""

    def __init__(self, class_count: int) -> None:
        super().__init__()
        widths = (3, 16, 32, 64, 96)
        blocks: list[nn.Module] = []
        for inputs, outputs in itertools.pairwise(widths):
            blocks += [
                nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
                nn.BatchNorm2d(outputs),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks)
        # No dropout: it would draw on torch's process-wide RNG and break determinism.
        self.head = nn.Linear(widths[-1], class_count)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Returns one row of logits per image of a (N, 3, H, W) batch."""
        pooled = self.features(batch).mean(dim=(2, 3))
        logits: torch.Tensor = self.head(pooled)
        return logits


def to_tensor(image: Image.Image, side: int) -> torch.Tensor:
    """Returns an RGB image resized to side x side as a (3, side, side) tensor in [-1, 1]."""
    resized = image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


@dataclass(frozen=True)
class ModelCard:
    """What a person and the service need to know about one trained model."""

    labels: tuple[str, ...]
    example_counts: tuple[int, ...]
    data_hash: str  # sha256 over the sorted example hashes and their labels
    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    validation_split: float
    input_size: int
    metrics: dict[str, float]
    created: str  # ISO 8601, UTC
    project: str
    training_job: str
    architecture: str = ARCHITECTURE
    demo_model: bool = True  # user-trained on a handful of webcam frames: never clinical
    warning: str = CLINICAL_WARNING
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelCard:
        """Returns the card read back from its JSON form."""
        raw = dict(raw)
        raw["labels"] = tuple(raw["labels"])
        raw["example_counts"] = tuple(raw["example_counts"])
        return cls(**raw)


@dataclass(frozen=True)
class SavedModel:
    """A trained classifier in memory: its card and its network in eval mode."""

    card: ModelCard
    network: SmallCnn

    def predict(self, batch: torch.Tensor) -> np.ndarray:
        """Returns class probabilities, one row per image of a preprocessed batch."""
        with torch.inference_mode():
            probabilities = torch.softmax(self.network(batch), dim=1)
        result: np.ndarray = probabilities.numpy()
        return result


def write_json_atomic(path: Path, document: object) -> None:
    """Writes JSON so that a reader sees the old file or the new one, never half of one."""
    write_text_atomic(path, json.dumps(document, indent=2))


def save_model(directory: Path, card: ModelCard, network: nn.Module) -> None:
    """Writes the weights and the card into a new directory that appears complete or not at all."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        torch.save(network.state_dict(), staging / WEIGHTS_FILE)
        write_json_atomic(staging / CARD_FILE, asdict(card))
        os.replace(staging, directory)
    except BaseException:
        _remove_tree(staging)
        raise


def load_model(directory: Path) -> SavedModel:
    """Returns the model saved in directory, ready to predict.

    Raises:
        OSError: a file is missing or unreadable.
        ValueError: the card or the weights are malformed.
    """
    try:
        card = ModelCard.from_json(json.loads((directory / CARD_FILE).read_text()))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed model card in {directory.name}: {exc}") from None
    network = SmallCnn(len(card.labels))
    state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"weights in {directory.name} do not fit the card: {exc}") from None
    network.eval()
    return SavedModel(card, network)


def _remove_tree(path: Path) -> None:
    for child in path.iterdir() if path.is_dir() else ():
        child.unlink(missing_ok=True)
    if path.is_dir():
        path.rmdir()
