"""Command-line argument types: numbers within bounds, refused with a message that says why."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def bounded(
    convert: Callable[[str], Number],
    noun: str,
    *,
    at_least: Number | None = None,
    more_than: Number | None = None,
    under: Number | None = None,
    at_most: Number | None = None,
) -> Callable[[str], Number]:
    """Returns an argparse `type` that parses a number and checks its bounds.

    Args:
        convert: `int` or `float`.
        noun: what the text should be, for the message ("a port number").
        at_least, more_than, under, at_most: inclusive or exclusive bounds.
    """

    def parse(text: str) -> Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        broken = [
            f"{rule} {bound}"
            for rule, bound, ok in (
                ("at least", at_least, at_least is None or value >= at_least),
                ("more than", more_than, more_than is None or value > more_than),
                ("under", under, under is None or value < under),
                ("at most", at_most, at_most is None or value <= at_most),
            )
            if not ok or value != value  # NaN passes no bound
        ]
        if broken:
            raise argparse.ArgumentTypeError(f"must be {broken[0]}, got {text}")
        return value

    return parse
