"""Resource names, labels, disease names and training parameters: validated plain values."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from servicekit.diseases import DISEASE_RULE, is_disease_name
from servicekit.errors import InvalidArgument

MIN_LABELS = 2
MAX_LABELS = 10
MAX_LABEL_CHARS = 40
MAX_DISPLAY_NAME_CHARS = 200
_ID = re.compile(r"[0-9a-f]{12}")
_LABEL = re.compile(r"[A-Za-z0-9 _-]+")
_PROJECT = re.compile(r"projects/([0-9a-f]{12})")
_JOB = re.compile(r"projects/([0-9a-f]{12})/trainingJobs/([0-9a-f]{12})")


def new_id() -> str:
    """Returns a fresh 12-hex-character id."""
    return secrets.token_hex(6)


def project_name(project_id: str) -> str:
    """Returns "projects/{project_id}"."""
    return f"projects/{project_id}"


def job_name(project_id: str, job_id: str) -> str:
    """Returns "projects/{project_id}/trainingJobs/{job_id}"."""
    return f"projects/{project_id}/trainingJobs/{job_id}"


def parse_project_name(name: str, *, field: str = "name") -> str:
    """Returns the project id of "projects/{id}"; InvalidArgument when malformed."""
    match = _PROJECT.fullmatch(name)
    if match is None:
        raise InvalidArgument(f"{field} must look like 'projects/<12 hex characters>'")
    return match.group(1)


def parse_job_name(name: str) -> tuple[str, str]:
    """Returns (project id, job id) of a training job's name; InvalidArgument when malformed."""
    match = _JOB.fullmatch(name)
    if match is None:
        raise InvalidArgument(
            "name must look like 'projects/<12 hex characters>/trainingJobs/<12 hex characters>'"
        )
    return match.group(1), match.group(2)


def is_id(text: str) -> bool:
    """Returns True when text is a server-made 12-hex-character id."""
    return _ID.fullmatch(text) is not None


def validate_labels(labels: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Returns the trimmed labels; InvalidArgument unless 2..10 unique well-formed ones."""
    trimmed = tuple(label.strip() for label in labels)
    if not MIN_LABELS <= len(trimmed) <= MAX_LABELS:
        raise InvalidArgument(
            f"a project needs {MIN_LABELS} to {MAX_LABELS} labels, got {len(trimmed)}"
        )
    for index, label in enumerate(trimmed):
        if not label or len(label) > MAX_LABEL_CHARS or not _LABEL.fullmatch(label):
            raise InvalidArgument(
                f"labels[{index}] must be 1 to {MAX_LABEL_CHARS} letters, digits, spaces, "
                "'-' or '_'"
            )
    if len(set(trimmed)) != len(trimmed):
        raise InvalidArgument("labels must be unique")
    return trimmed


def validate_display_name(display_name: str) -> str:
    """Returns the trimmed display name; InvalidArgument when too long."""
    trimmed = display_name.strip()
    if len(trimmed) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidArgument(f"display_name must be at most {MAX_DISPLAY_NAME_CHARS} characters")
    return trimmed


def validate_disease(disease: str) -> str:
    """Returns the disease name; InvalidArgument when it breaks the gateway's naming rule."""
    if not is_disease_name(disease):
        raise InvalidArgument(f"disease must be {DISEASE_RULE}")
    return disease


@dataclass(frozen=True)
class TrainParams:
    """How one training runs; a zero in the request means the default."""

    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 0.003
    validation_split: float = 0.2
    seed: int = 0

    @classmethod
    def from_request(
        cls,
        *,
        epochs: int,
        batch_size: int,
        learning_rate: float,
        validation_split: float,
        seed: int,
    ) -> TrainParams:
        """Returns the parameters with defaults for zeros; InvalidArgument when out of range."""
        defaults = cls()
        params = cls(
            epochs=epochs or defaults.epochs,
            batch_size=batch_size or defaults.batch_size,
            learning_rate=learning_rate or defaults.learning_rate,
            validation_split=validation_split or defaults.validation_split,
            seed=seed,
        )
        if not 1 <= params.epochs <= 200:
            raise InvalidArgument("epochs must be between 1 and 200")
        if not 1 <= params.batch_size <= 256:
            raise InvalidArgument("batch_size must be between 1 and 256")
        if not 0 < params.learning_rate <= 1:
            raise InvalidArgument("learning_rate must be above 0 and at most 1")
        if not 0 < params.validation_split <= 0.5:
            raise InvalidArgument("validation_split must be between 0 and 0.5")
        return params
