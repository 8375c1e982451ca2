"""The `medimg train <disease>` bootstrap: options, the next version, an atomic write, the exit."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from servicekit.argtypes import bounded
from servicekit.classifier.card import CARD_FILE, ModelCard, read_json
from servicekit.classifier.domain import ImageDomain
from servicekit.classifier.training import TrainingError

positive_int = bounded(int, "a whole number", at_least=1)
positive_float = bounded(float, "a number", more_than=0.0)
fraction = bounded(float, "a number", at_least=0.0, under=0.5)
side = bounded(int, "a number of pixels", at_least=8, at_most=1024)


class Train(Protocol):
    """Runs one training as parsed and returns the card of the model it wrote."""

    def __call__(self, args: argparse.Namespace, *, command: str) -> ModelCard: ...


def run_command(
    prog: str, parser: argparse.ArgumentParser, train: Train, argv: Sequence[str] | None
) -> int:
    """Parses argv (sys.argv[1:] when None), trains, and says what it wrote; the exit code.

    A TrainingError is one line, `<prog>: error: ...`, and exit code 2, as argparse
    reports a bad option. The card records the command as it would be typed.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    try:
        card = train(args, command=shlex.join([*prog.split(), *arguments]))
    except TrainingError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    accuracy = card.metrics.get("accuracy", float("nan"))
    print(
        f"wrote {card.name} version {card.version} to {args.out}: "
        f"accuracy {accuracy:.3f} on {card.evaluation}"
    )
    return 0


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


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yields a hidden path beside target to write a folder at; it then replaces target whole.

    The writer creates the folder. A reader (a serving process, TF Serving) sees the
    old folder or the new one, never half of one; a failed write leaves target as it was.
    """
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
        if target.exists():
            retired = target.parent / f".{target.name}.old-{os.getpid()}"
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
