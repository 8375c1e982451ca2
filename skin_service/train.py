"""Trains the skin-lesion CNN on a labelled folder or on generated images, then exports it."""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from servicekit.argtypes import bounded
from servicekit.errors import InvalidImage
from servicekit.images import ImageLimits, decode_image
from skin_service import data
from skin_service import model as skin_model
from skin_service.domain import DEFAULT_INPUT_SIZE, LABELS, decoded_side, preprocess
from skin_service.model_card import ModelCard

PROG = "medimg train skin"
DEFAULT_OUT = Path(__file__).parent / "models" / "skin-demo"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
# The held-out generated set uses a seed this far from the training seed, so no image
# the model was trained on can be in it.
EVALUATION_SEED_OFFSET = 1_000_000


class TrainingError(Exception):
    """The training inputs are unusable; the message says what to fix."""


@dataclass(frozen=True)
class Examples:
    """Preprocessed images with the index of each one's label in LABELS."""

    images: np.ndarray  # float32 (count, size, size, 3) in [0, 1]
    labels: np.ndarray  # int32 (count,)
    description: str  # where they came from, for the model card


def main(argv: list[str] | None = None) -> int:
    """Trains, evaluates and exports a model as argv (sys.argv[1:] when None) asks."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    try:
        card = train(args, command=shlex.join([*PROG.split(), *arguments]))
    except TrainingError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {card.name} version {card.version} to {args.out}: "
        f"accuracy {card.metrics['accuracy']:.3f} on {card.evaluation}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of the training options."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Trains the skin-lesion classifier and writes a SavedModel in TF Serving's "
        "layout (OUT/VERSION/) with its model card. Without --data it trains on generated "
        "images (a demo model, not for clinical use).",
    )
    source = parser.add_argument_group("data")
    source.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help=f"folder of LABEL/*.jpg|jpeg|png with LABEL in: {', '.join(LABELS)}",
    )
    source.add_argument(
        "--generated-count-per-label",
        type=_positive_int,
        default=1500,
        metavar="N",
        help="without --data: generated training images per label (default: 1500)",
    )
    source.add_argument(
        "--evaluation-count-per-label",
        type=_positive_int,
        default=500,
        metavar="N",
        help="without --data: held-out generated images per label, from another seed "
        "(default: 500)",
    )
    source.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the data, the split and the weights (default: 1)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="model folder (default: the shipped demo model's, skin_service/models/skin-demo)",
    )
    parser.add_argument(
        "--version",
        type=_positive_int,
        metavar="N",
        help="version folder to write, replacing one that exists (default: one above the latest)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=20,
        metavar="N",
        help="passes over the data (default: 20)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        metavar="N",
        help="images per step (default: 32)",
    )
    parser.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=2e-3,
        metavar="RATE",
        help="Adam's first learning rate, decayed to 0 along a cosine (default: 0.002)",
    )
    parser.add_argument(
        "--input-size",
        type=_positive_int,
        default=DEFAULT_INPUT_SIZE,
        metavar="PX",
        help=f"side of the square model input in pixels (default: {DEFAULT_INPUT_SIZE})",
    )
    parser.add_argument(
        "--validation-split",
        type=_fraction,
        default=0.1,
        metavar="SHARE",
        help="share of the training images held out for validation; with --data it is "
        "also the evaluation set (default: 0.1)",
    )
    return parser


_positive_int = bounded(int, "a whole number", at_least=1)
_positive_float = bounded(float, "a number", more_than=0.0)
_fraction = bounded(float, "a number", at_least=0.0, under=0.5)


def train(args: argparse.Namespace, *, command: str) -> ModelCard:
    """Runs one training as parsed by build_parser and returns the card it wrote."""
    keras.utils.set_random_seed(args.seed)
    # Same seed, same weights: also makes the data pipeline of fit() single-threaded.
    tf.config.experimental.enable_op_determinism()
    datasets = load_datasets(args)
    network = skin_model.build_model(args.input_size)
    started = time.monotonic()
    fit(network, datasets, args)
    seconds = time.monotonic() - started
    version = args.version or _next_version(args.out)
    skin_model.export_model(network, args.out, version)
    # The card's numbers come from the exported artifact itself, as serving will run it.
    predict = skin_model.load_for_inference(args.out, version)
    predicted = predict_in_batches(predict, datasets.evaluation.images)
    matrix = confusion_matrix(datasets.evaluation.labels, predicted, len(LABELS))
    card = ModelCard(
        name=args.out.name,
        version=version,
        labels=LABELS,
        input_size=args.input_size,
        data=datasets.fit.description,
        demo_model=args.data is None,
        trained_on=datetime.date.today().isoformat(),
        metrics=_metrics(matrix),
        confusion_matrix=tuple(tuple(int(n) for n in row) for row in matrix),
        evaluation=datasets.evaluation.description,
        training=_training_record(args, command, datasets, seconds),
    )
    skin_model.write_model_card(card, args.out)
    return card


@dataclass(frozen=True)
class Datasets:
    """What one training run fits on, watches, and is finally measured on."""

    fit: Examples
    validation: Examples
    evaluation: Examples


def load_datasets(args: argparse.Namespace) -> Datasets:
    """Returns the run's datasets: from --data, or generated from --seed.

    With --data the validation split is also the evaluation set (nothing else is held
    out); generated data is evaluated on images from another seed.
    """
    if args.data is not None:
        if args.validation_split == 0:
            raise TrainingError(
                "--validation-split must be above 0 with --data: it is the test set"
            )
        examples = read_folder(args.data, args.input_size)
        fit_set, validation = split(examples, args.validation_split, args.seed)
        share = f"held-out {args.validation_split:.0%} of {examples.description}"
        return Datasets(fit_set, validation, replace(validation, description=share))
    examples = generated_examples(args.generated_count_per_label, args.seed, args.input_size)
    fit_set, validation = split(examples, args.validation_split, args.seed)
    unseen = generated_examples(
        args.evaluation_count_per_label, args.seed + EVALUATION_SEED_OFFSET, args.input_size
    )
    description = f"held-out {unseen.description}, never seen in training"
    return Datasets(fit_set, validation, replace(unseen, description=description))


def fit(network: keras.Model, datasets: Datasets, args: argparse.Namespace) -> None:
    """Trains network with Adam and a cosine-decaying learning rate, reporting progress."""
    steps = int(np.ceil(len(datasets.fit.labels) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, steps * args.epochs)
    network.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    validation = datasets.validation
    network.fit(
        datasets.fit.images,
        datasets.fit.labels,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=(validation.images, validation.labels) if len(validation.labels) else None,
        callbacks=[EpochProgress(steps, args.epochs, sys.stderr)],
        verbose=0,
    )


def _training_record(
    args: argparse.Namespace, command: str, datasets: Datasets, seconds: float
) -> dict[str, str | int | float]:
    return {
        "command": command,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "learning_rate_schedule": "cosine decay to 0",
        "seed": args.seed,
        "validation_split": args.validation_split,
        "training_images": len(datasets.fit.labels),
        "validation_images": len(datasets.validation.labels),
        "training_seconds": round(seconds, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def _next_version(model_dir: Path) -> int:
    existing = (
        [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    )
    return max(existing, default=0) + 1


def read_folder(folder: Path, input_size: int) -> Examples:
    """Returns the preprocessed images of folder/LABEL/*.jpg|jpeg|png.

    Every file goes through servicekit.images.decode_image and domain.preprocess, as an
    upload does in serving. Unreadable files are skipped and counted.

    Raises:
        TrainingError: the folder's label folders are not exactly LABELS, or one is empty.
    """
    if not folder.is_dir():
        raise TrainingError(f"--data {folder} is not a folder")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if set(found) != set(LABELS):
        raise TrainingError(
            f"--data needs exactly one folder per label: {', '.join(LABELS)}; "
            f"found: {', '.join(found) or 'no folders'}"
        )
    files = [
        (path, index)
        for index, label in enumerate(LABELS)
        for path in sorted((folder / label).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    ]
    images, labels, skipped = [], [], 0
    limits = ImageLimits()
    for path, index in _progress(files, "loading images"):
        try:
            image = decode_image(path.read_bytes(), limits, min_side=decoded_side(input_size))
        except (InvalidImage, OSError):
            skipped += 1
            continue
        images.append(preprocess(image, input_size))
        labels.append(index)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(LABELS))
    empty = [label for label, count in zip(LABELS, counts, strict=True) if count == 0]
    print(f"loaded {len(labels)} images from {folder}; skipped {skipped} unreadable", flush=True)
    if empty:
        raise TrainingError(f"no readable images for: {', '.join(empty)}")
    description = f"folder {folder.name} ({len(labels)} images, {skipped} unreadable skipped)"
    return _examples(images, labels, description, input_size)


def generated_examples(count_per_label: int, seed: int, input_size: int) -> Examples:
    """Returns count_per_label generated images per label, preprocessed."""
    images, labels = [], []
    stream = data.generate_dataset(count_per_label, seed)
    total = count_per_label * len(LABELS)
    for image, label in _progress(stream, f"generating images (seed {seed})", total):
        images.append(preprocess(image, input_size))
        labels.append(LABELS.index(label))
    description = (
        f"generated by skin_service.data (seed {seed}, {count_per_label} images per label, "
        f"{data.DEFAULT_IMAGE_SIZE} px)"
    )
    return _examples(images, labels, description, input_size)


def _examples(
    images: list[np.ndarray], labels: list[int], description: str, input_size: int
) -> Examples:
    stacked = np.stack(images) if images else np.zeros((0, input_size, input_size, 3), np.float32)
    return Examples(stacked, np.asarray(labels, dtype=np.int32), description)


def split(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Returns (rest, held out) with about fraction of each label held out, chosen by seed."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for index in range(len(LABELS)):
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


def predict_in_batches(predict: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
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


def _metrics(matrix: np.ndarray) -> dict[str, float]:
    total = int(matrix.sum())
    metrics = {"accuracy": round(float(np.trace(matrix)) / max(total, 1), 4)}
    for index, label in enumerate(LABELS):
        # Recall per label: for melanoma, the share of melanomas the model catches.
        metrics[f"recall_{label}"] = round(
            float(matrix[index, index]) / max(int(matrix[index].sum()), 1), 4
        )
    return metrics


def _progress(items: Iterable[Any], what: str, total: int | None = None) -> Iterator[Any]:
    """Yields items with a progress bar on a terminal; elsewhere one line at the end."""
    started = time.monotonic()
    # disable=None: tqdm draws only on a terminal, so logs are not flooded.
    yield from tqdm(items, desc=what, total=total, unit="img", disable=None, dynamic_ncols=True)
    if not sys.stderr.isatty():
        print(f"{what}: done in {time.monotonic() - started:.1f} s", flush=True)


class EpochProgress(keras.callbacks.Callback):  # type: ignore[misc]
    """One line per epoch with its numbers; on a terminal, a live bar while it runs."""

    def __init__(self, steps: int, epochs: int, stream: TextIO) -> None:
        super().__init__()
        self._steps, self._epochs, self._stream = steps, epochs, stream
        self._bar: tqdm[Any] | None = None
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Starts the epoch's bar."""
        self._started = time.monotonic()
        if self._stream.isatty():
            # leave=False: the bar gives way to the epoch's line, which never truncates.
            self._bar = tqdm(
                total=self._steps,
                desc=f"epoch {epoch + 1}/{self._epochs}",
                unit="batch",
                file=self._stream,
                dynamic_ncols=True,
                leave=False,
            )

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        """Advances the bar with the running loss and accuracy."""
        if self._bar is not None:
            self._bar.set_postfix_str(_shown(logs or {}), refresh=False)
            self._bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Prints the epoch's final numbers, validation included."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        took = time.monotonic() - self._started
        line = f"epoch {epoch + 1}/{self._epochs}: {_shown(logs or {})} ({took:.0f} s)"
        print(line, flush=True)


def _shown(logs: dict[str, float]) -> str:
    names = {"loss": "loss", "accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}
    return " ".join(
        f"{short} {float(logs[name]):.3f}" for name, short in names.items() if name in logs
    )


if __name__ == "__main__":
    raise SystemExit(main())
