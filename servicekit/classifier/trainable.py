"""A model module's four functions, and the demo model and folder training built on them."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from servicekit.classifier import training
from servicekit.classifier.card import ModelCard
from servicekit.classifier.domain import ImageDomain
from servicekit.classifier.settings import SettingsSpec
from servicekit.classifier.train_command import folder_parser, next_version, run_command
from servicekit.train_command import training_record

DEMO_SEED = 0
# The options a trained model's card records beside the command, which holds them all.
RECORDED = ("epochs", "batch_size", "learning_rate", "validation_split", "seed")


class TrainableModel(Protocol):
    """What a scaffolded service's `model` module supplies: its network, in four functions.

    The network is whatever the framework calls a model (a keras.Model, a torch
    nn.Module); the kit only hands it from one function to the next.
    """

    __name__: str

    @property
    def card_type(self) -> type[ModelCard]:
        """The card class its saved models carry."""
        ...

    def build_network(self, classes: int, *, seed: int) -> Any:
        """Returns a new network whose weights depend only on seed."""
        ...

    def fit(self, network: Any, examples: training.Examples, args: argparse.Namespace) -> None:
        """Trains network in place on examples, as args (epochs, batch size, …) say."""
        ...

    def predict(self, network: Any, inputs: np.ndarray) -> np.ndarray:
        """Returns the probability of each label for each input."""
        ...

    def save_model(self, network: Any, card: Any, model_dir: Path) -> Path:
        """Writes the network and its card into model_dir, where the backend loads them."""
        ...


def write_demo_model(
    out: Path, domain: ImageDomain, model: TrainableModel, *, input_size: int | None = None
) -> ModelCard:
    """Writes an untrained network with seeded weights and its card into out; the card.

    The weights depend only on DEMO_SEED, so every checkout writes the same model, and
    the service and its tests run before any real model exists. Its answers mean nothing.
    """
    package = model.__name__.rpartition(".")[0]
    card = model.card_type(
        name=f"{domain.disease}-demo",
        version=1,
        labels=domain.labels,
        input_size=input_size or domain.input_size,
        data="none: seeded random weights, never trained",
        demo_model=True,
        trained_on=datetime.date.today().isoformat(),
        evaluation="none: the demo model is not evaluated",
        training={"command": f"python -m {package}.demo_model", "seed": DEMO_SEED},
    )
    model.save_model(model.build_network(len(domain.labels), seed=DEMO_SEED), card, out)
    return card


def demo_main(
    domain: ImageDomain,
    model: TrainableModel,
    spec: SettingsSpec,
    argv: Sequence[str] | None = None,
) -> int:
    """`python -m <package>.demo_model [--out DIR]`: writes the demo model; the exit code."""
    default = spec.default_model_dir
    parser = argparse.ArgumentParser(
        prog=f"python -m {model.__name__.rpartition('.')[0]}.demo_model",
        description="Writes an untrained, seeded demo model: not for clinical use.",
    )
    parser.add_argument("--out", type=Path, default=default, help=f"folder (default: {default})")
    args = parser.parse_args(argv)
    card = write_demo_model(args.out, domain, model)
    print(f"wrote {card.name} ({', '.join(card.labels)}) to {args.out}: {card.warning}")
    return 0


def train_main(
    domain: ImageDomain,
    model: TrainableModel,
    spec: SettingsSpec,
    argv: Sequence[str] | None = None,
) -> int:
    """`medimg train <disease> --data DIR`: trains on a labelled folder; the exit code.

    The model goes to models/<disease> beside the demo model unless --out says otherwise.
    """
    prog = f"medimg train {domain.disease}"
    default_out = spec.default_model_dir.parent / domain.disease
    parser = folder_parser(
        prog, domain, default_out=default_out, default_input_size=domain.input_size
    )

    def train(args: argparse.Namespace, *, command: str) -> ModelCard:
        return train_on_folder(args, domain, model, command=command)

    return run_command(prog, parser, train, argv)


def train_on_folder(
    args: argparse.Namespace, domain: ImageDomain, model: TrainableModel, *, command: str
) -> ModelCard:
    """Fits a new network on --data less a held-out share, measures it there, saves both."""
    labels = domain.labels
    data = training.read_folder(args.data, domain, args.input_size)
    fit_set, held_out = training.split(data, args.validation_split, args.seed)
    network = model.build_network(len(labels), seed=args.seed)
    model.fit(network, fit_set, args)
    guesses = training.predict_in_batches(
        lambda batch: model.predict(network, batch), held_out.images
    )
    matrix = training.confusion_matrix(held_out.labels, guesses, len(labels))
    card = model.card_type(
        name=args.out.name,
        version=args.version or next_version(args.out),
        labels=labels,
        input_size=args.input_size,
        data=data.description,
        demo_model=False,
        trained_on=datetime.date.today().isoformat(),
        metrics=training.classification_metrics(matrix, labels),
        confusion_matrix=training.matrix_rows(matrix),
        evaluation=f"held-out {args.validation_split:.0%} of the images of each label",
        training=training_record(command, args, *RECORDED),
    )
    model.save_model(network, card, args.out)
    return card
