"""The model card beside every classifier model: JSON for the service, Markdown for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from servicekit.errors import ModelNotReady
from servicekit.files import write_text_atomic

CARD_FILE = "model_card.json"
MARKDOWN_CARD_FILE = "MODEL_CARD.md"


def read_json(path: Path) -> dict[str, Any]:
    """Returns the JSON object in path.

    Raises:
        FileNotFoundError: there is no file.
        ValueError: it is not JSON, or not an object.
    """
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name} holds {type(raw).__name__}, not an object")
    return raw


@dataclass(frozen=True)
class ModelCard:
    """What a person and the service need to know about one classifier model.

    A service subclasses it for what its model format adds (a signature's keys, a
    framework) and overrides `details` (the Markdown's model lines) and `check`.
    """

    CLINICAL_WARNING: ClassVar[str] = (
        "Demo model: not trained on clinical data, not for clinical use."
    )

    name: str
    version: int
    labels: tuple[str, ...]  # the order of the model's outputs
    input_size: int  # the model reads (input_size x input_size) images
    data: str  # where the training data came from, e.g. "generated (seed 1, 3000 images)"
    demo_model: bool  # True when not trained on clinical data: never for clinical use
    trained_on: str  # ISO date
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. {"accuracy": 0.93}
    confusion_matrix: tuple[tuple[int, ...], ...] = ()  # rows: true label, columns: predicted
    evaluation: str = ""  # what the metrics were measured on
    training: dict[str, str | int | float] = field(default_factory=dict)  # command, epochs, …

    @property
    def warning(self) -> str:
        """Returns the clinical-use warning for demo models, or ""."""
        return self.CLINICAL_WARNING if self.demo_model else ""

    def save(self, model_dir: Path) -> None:
        """Writes the card into model_dir as model_card.json and a readable MODEL_CARD.md."""
        write_text_atomic(model_dir / CARD_FILE, json.dumps(asdict(self), indent=2) + "\n")
        write_text_atomic(model_dir / MARKDOWN_CARD_FILE, self.markdown())

    @classmethod
    def load(cls, model_dir: Path) -> Self:
        """Reads the card of the model in model_dir.

        Raises:
            FileNotFoundError: there is no card.
            ValueError: the card is malformed.
        """
        raw = read_json(model_dir / CARD_FILE)
        try:
            raw["labels"] = tuple(raw["labels"])
            raw["confusion_matrix"] = tuple(tuple(row) for row in raw.get("confusion_matrix", ()))
            card = cls(**raw)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed model card in {model_dir}: {exc}") from None
        if not all(isinstance(label, str) for label in card.labels):
            raise ValueError(f"malformed model card in {model_dir}: labels must be strings")
        if isinstance(card.input_size, bool) or not isinstance(card.input_size, int):
            raise ValueError(f"malformed model card in {model_dir}: input_size must be an integer")
        if card.input_size < 8:
            raise ValueError(f"malformed model card in {model_dir}: input_size must be at least 8")
        return card

    @classmethod
    def read(cls, model_dir: Path, *, setting: str) -> Self:
        """Returns the card of the model folder a service is set to (setting names it).

        Raises:
            ModelNotReady: there is no card, or it cannot be read.
            ModelMismatch: `check` refuses it.
        """
        try:
            card = cls.load(model_dir)
        except FileNotFoundError:
            raise ModelNotReady(f"{setting} holds no {CARD_FILE}") from None
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise ModelNotReady(f"the model card in {setting} is malformed: {exc}") from None
        card.check()
        return card

    def check(self) -> None:
        """Raises ModelMismatch when the card is not for this service; a subclass's rule."""

    def details(self) -> Sequence[str]:
        """Returns the Markdown lines on the model's input, output and files; a subclass's."""
        return (f"- Input: RGB, {self.input_size} x {self.input_size} pixels, in [0, 1]",)

    def markdown(self) -> str:
        """Returns the card as Markdown for people: labels, data, metrics, confusion matrix."""
        lines = [f"# Model card: {self.name}, version {self.version}", ""]
        if self.warning:
            lines += [f"**{self.warning}**", ""]
        lines += [
            f"- Trained on: {self.trained_on}",
            f"- Labels (output order): {', '.join(self.labels)}",
            *self.details(),
            f"- Data: {self.data}",
            "",
            "## Evaluation",
            "",
            self.evaluation,
            "",
            "| metric | value |",
            "| --- | --- |",
            *(f"| {name} | {value:.4f} |" for name, value in self.metrics.items()),
            "",
        ]
        if self.confusion_matrix:
            lines += [
                "Confusion matrix (rows: true label, columns: predicted):",
                "",
                "| true \\ predicted | " + " | ".join(self.labels) + " |",
                "| --- |" + " --- |" * len(self.labels),
                *(
                    f"| {label} | " + " | ".join(str(count) for count in row) + " |"
                    for label, row in zip(self.labels, self.confusion_matrix, strict=True)
                ),
                "",
            ]
        command = self.training.get("command")
        lines += ["## Training", ""]
        if command:
            lines += ["Produced by:", "", "```", str(command), "```", ""]
        lines += [f"- {key}: {value}" for key, value in self.training.items() if key != "command"]
        return "\n".join(lines) + "\n"
