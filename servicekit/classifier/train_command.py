"""A classifier's `medimg train <disease>`: folder options, the next version, the accuracy."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from servicekit import train_command
from servicekit.argtypes import bounded
from servicekit.classifier.card import CARD_FILE, ModelCard, read_json
from servicekit.classifier.domain import ImageDomain
from servicekit.train_command import Train

positive_int = bounded(int, "a whole number", at_least=1)
positive_float = bounded(float, "a number", more_than=0.0)
fraction = bounded(float, "a number", at_least=0.0, under=0.5)
side = bounded(int, "a number of pixels", at_least=8, at_most=1024)


def run_command(
    prog: str, parser: argparse.ArgumentParser, train: Train[ModelCard], argv: Sequence[str] | None
) -> int:
    """servicekit's training command, whose last line gives the held-out accuracy."""
    return train_command.run_command(prog, parser, train, argv, summary=_accuracy)


def _accuracy(card: ModelCard) -> str:
    return f"accuracy {card.metrics.get('accuracy', float('nan')):.3f}"


def folder_parser(
    prog: str, domain: ImageDomain, *, default_out: Path, default_input_size: int
) -> argparse.ArgumentParser:
    """Returns the options of training on a folder of labelled images (--data DIR)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Trains the model on DATA/<label>/*.png|jpg and writes it with its "
        f"model card to --out. Labels: {', '.join(domain.labels)}.",
    )
    parser.add_argument("--data", type=Path, required=True, help="folder of label folders")
    parser.add_argument("--out", type=Path, default=default_out, help="model folder to write")
    parser.add_argument(
        "--version", type=positive_int, help="version to write (default: one above the latest)"
    )
    parser.add_argument("--epochs", type=positive_int, default=10, help="passes (10)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per step (32)")
    parser.add_argument("--learning-rate", type=positive_float, default=1e-3, help="Adam's (0.001)")
    parser.add_argument(
        "--input-size", type=side, default=default_input_size, help="model input side in px"
    )
    parser.add_argument(
        "--validation-split", type=fraction, default=0.2, help="held out per label (0.2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights, order and split (0)")
    return parser


def next_version(model_dir: Path) -> int:
    """Returns one above the newest version in model_dir (its card's or a version folder's)."""
    folders = model_dir.iterdir() if model_dir.is_dir() else ()
    found = [int(p.name) for p in folders if p.name.isdigit()]
    try:
        version = read_json(model_dir / CARD_FILE).get("version")
    except (OSError, ValueError):
        version = None
    if isinstance(version, int) and not isinstance(version, bool):
        found.append(version)
    return max(found, default=0) + 1
