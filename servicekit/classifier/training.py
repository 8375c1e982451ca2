"""Training data of a classifier: labelled folders read as uploads are, splits, metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servicekit.classifier.domain import ImageDomain
from servicekit.errors import InvalidImage
from servicekit.images import ImageLimits
from servicekit.train_command import TrainingError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# Wraps what a long loop goes over to show progress (a tqdm bar); by default nothing.
Progress = Callable[[Iterable[Any], str], Iterable[Any]]


@dataclass(frozen=True)
class Examples:
    """Preprocessed images with the index of each one's label in the domain's labels."""

    images: np.ndarray  # float32, one model input per row
    labels: np.ndarray  # int32 (count,)
    description: str  # where they came from, for the model card

    def __len__(self) -> int:
        return len(self.labels)


def _quiet(items: Iterable[Any], what: str) -> Iterable[Any]:
    return items


def stack_examples(
    images: list[np.ndarray], labels: list[int], description: str, empty_shape: tuple[int, ...]
) -> Examples:
    """Returns images stacked on axis 0 with their labels; empty_shape is one input's shape."""
    stacked = np.stack(images) if images else np.zeros((0, *empty_shape), np.float32)
    return Examples(stacked, np.asarray(labels, dtype=np.int32), description)


def read_folder(
    folder: Path, domain: ImageDomain, input_size: int, *, progress: Progress = _quiet
) -> Examples:
    """Returns the preprocessed images of folder/LABEL/*.jpg|jpeg|png.

    Every file goes through domain.prepare, as an upload does in serving. Unreadable
    files are skipped and counted.

    Raises:
        TrainingError: the folder's label folders are not exactly the labels, or one is empty.
    """
    labels = domain.labels
    if not folder.is_dir():
        raise TrainingError(f"--data {folder} is not a folder")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if set(found) != set(labels):
        raise TrainingError(
            f"--data needs exactly one folder per label: {', '.join(labels)}; "
            f"found: {', '.join(found) or 'no folders'}"
        )
    files = [
        (path, index)
        for index, label in enumerate(labels)
        for path in sorted((folder / label).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    ]
    images, targets, skipped = [], [], 0
    limits = ImageLimits()
    for path, index in progress(files, "loading images"):
        try:
            images.append(domain.prepare(path.read_bytes(), limits, input_size))
        except (InvalidImage, OSError):
            skipped += 1
            continue
        targets.append(index)
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=len(labels))
    empty = [label for label, count in zip(labels, counts, strict=True) if count == 0]
    print(f"loaded {len(targets)} images from {folder}; skipped {skipped} unreadable", flush=True)
    if empty:
        raise TrainingError(f"no readable images for: {', '.join(empty)}")
    description = f"folder {folder.name} ({len(targets)} images, {skipped} unreadable skipped)"
    return stack_examples(images, targets, description, domain.input_shape(input_size))


def split(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Returns (rest, held out) with about fraction of each label held out, chosen by seed."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for index in range(int(examples.labels.max(initial=-1)) + 1):
        members = np.flatnonzero(examples.labels == index)
        held.extend(rng.permutation(members)[: round(len(members) * fraction)].tolist())
    mask = np.zeros(len(examples.labels), dtype=bool)
    mask[held] = True
    rest = np.flatnonzero(~mask)
    chosen = np.flatnonzero(mask)
    return (
        Examples(examples.images[rest], examples.labels[rest], examples.description),
        Examples(examples.images[chosen], examples.labels[chosen], examples.description),
    )


def predict_in_batches(
    predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Returns the predicted label index of every image."""
    predicted = [
        np.argmax(predict(images[start : start + batch_size]), axis=1)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(predicted) if predicted else np.zeros(0, dtype=np.int64)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Returns counts with rows for the true label and columns for the predicted one."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def classification_metrics(matrix: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    """Returns the accuracy and each label's recall, rounded for the model card."""
    total = int(matrix.sum())
    metrics = {"accuracy": round(float(np.trace(matrix)) / max(total, 1), 4)}
    for index, label in enumerate(labels):
        # Recall per label: for melanoma, the share of melanomas the model catches.
        metrics[f"recall_{label}"] = round(
            float(matrix[index, index]) / max(int(matrix[index].sum()), 1), 4
        )
    return metrics


def matrix_rows(matrix: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """Returns a confusion matrix as the model card stores it."""
    return tuple(tuple(int(n) for n in row) for row in matrix)
