"""The `medimg train <service>` command every service shares: parse, train, one line out."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar


class TrainingError(Exception):
    """The training inputs are unusable; the message says what to fix."""


class Card(Protocol):
    """What the closing line says of the model a training wrote."""

    @property
    def name(self) -> str:
        """The model's name."""
        ...

    @property
    def version(self) -> int:
        """The version written."""
        ...

    @property
    def evaluation(self) -> str:
        """What the model was evaluated on."""
        ...


CardT = TypeVar("CardT", bound=Card)
CardT_co = TypeVar("CardT_co", bound=Card, covariant=True)


class Train(Protocol[CardT_co]):
    """Runs one training as parsed and returns the card of the model it wrote."""

    def __call__(self, args: argparse.Namespace, *, command: str) -> CardT_co: ...


def run_command(
    prog: str,
    parser: argparse.ArgumentParser,
    train: Train[CardT],
    argv: Sequence[str] | None,
    *,
    summary: Callable[[CardT], str],
) -> int:
    """Parses argv (sys.argv[1:] when None), trains, and says what it wrote; the exit code.

    A TrainingError is one line, `<prog>: error: ...`, and exit code 2, as argparse
    reports a bad option. The card records the command as it would be typed; the last
    line says `wrote NAME version N to OUT: <summary> on <evaluation>`.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    try:
        card = train(args, command=shlex.join([*prog.split(), *arguments]))
    except TrainingError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {card.name} version {card.version} to {args.out}: "
        f"{summary(card)} on {card.evaluation}"
    )
    return 0


def training_record(
    command: str, args: argparse.Namespace, *options: str
) -> dict[str, str | int | float]:
    """Returns the start of a card's training record: the command, then each option's value."""
    return {"command": command, **{option: getattr(args, option) for option in options}}
