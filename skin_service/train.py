"""Trains the skin-lesion CNN on a labelled folder or on generated images, then exports it."""

from __future__ import annotations

import argparse
import datetime
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

from servicekit.classifier import training
from servicekit.classifier.train_command import (
    fraction,
    next_version,
    positive_float,
    positive_int,
    run_command,
)
from servicekit.classifier.training import (
    Examples,
    classification_metrics,
    confusion_matrix,
    matrix_rows,
    predict_in_batches,
    split,
    stack_examples,
)
from servicekit.train_command import TrainingError, training_record
from skin_service import data
from skin_service import model as skin_model
from skin_service.domain import DEFAULT_INPUT_SIZE, LABELS, SKIN, preprocess
from skin_service.model_card import ModelCard

PROG = "medimg train skin"
DEFAULT_OUT = Path(__file__).parent / "models" / "skin-demo"
# The held-out generated set uses a seed this far from the training seed, so no image
# the model was trained on can be in it.
EVALUATION_SEED_OFFSET = 1_000_000


def main(argv: list[str] | None = None) -> int:
    """Trains, evaluates and exports a model as argv (sys.argv[1:] when None) asks."""
    return run_command(PROG, build_parser(), train, argv)


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
        type=positive_int,
        default=1500,
        metavar="N",
        help="without --data: generated training images per label (default: 1500)",
    )
    source.add_argument(
        "--evaluation-count-per-label",
        type=positive_int,
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
        type=positive_int,
        metavar="N",
        help="version folder to write, replacing one that exists (default: one above the latest)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=20,
        metavar="N",
        help="passes over the data (default: 20)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        metavar="N",
        help="images per step (default: 32)",
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=2e-3,
        metavar="RATE",
        help="Adam's first learning rate, decayed to 0 along a cosine (default: 0.002)",
    )
    parser.add_argument(
        "--input-size",
        type=positive_int,
        default=DEFAULT_INPUT_SIZE,
        metavar="PX",
        help=f"side of the square model input in pixels (default: {DEFAULT_INPUT_SIZE})",
    )
    parser.add_argument(
        "--validation-split",
        type=fraction,
        default=0.1,
        metavar="SHARE",
        help="share of the training images held out for validation; with --data it is "
        "also the evaluation set (default: 0.1)",
    )
    return parser


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
    version = args.version or next_version(args.out)
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
        metrics=classification_metrics(matrix, LABELS),
        confusion_matrix=matrix_rows(matrix),
        evaluation=datasets.evaluation.description,
        training=_training_record(args, command, datasets, seconds),
    )
    card.save(args.out)
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
        **training_record(command, args, "epochs", "batch_size", "learning_rate"),
        "learning_rate_schedule": "cosine decay to 0",
        "seed": args.seed,
        "validation_split": args.validation_split,
        "training_images": len(datasets.fit.labels),
        "validation_images": len(datasets.validation.labels),
        "training_seconds": round(seconds, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def read_folder(folder: Path, input_size: int) -> Examples:
    """Returns the preprocessed images of folder/LABEL/*.jpg|jpeg|png, as serving reads them.

    Unreadable files are skipped and counted (servicekit.classifier.training.read_folder).

    Raises:
        TrainingError: the folder's label folders are not exactly LABELS, or one is empty.
    """
    return training.read_folder(folder, SKIN, input_size, progress=_progress)


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
    return stack_examples(images, labels, description, SKIN.input_shape(input_size))


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
