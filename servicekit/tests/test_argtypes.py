"""Bounded number arguments: parsed when in bounds, refused with the broken bound."""

import argparse
import re

import pytest

from servicekit.argtypes import bounded


def test_it_parses_numbers_within_bounds() -> None:
    assert bounded(int, "a port number", at_least=0, at_most=65535)("50051") == 50051
    assert bounded(float, "a number", at_least=0.0, under=0.5)("0") == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "not a whole number: 'abc'"),
        ("0", "must be at least 1, got 0"),
        ("11", "must be at most 10, got 11"),
    ],
)
def test_it_refuses_with_the_broken_bound(text: str, message: str) -> None:
    parse = bounded(int, "a whole number", at_least=1, at_most=10)
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


def test_exclusive_bounds_exclude_their_value() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape("must be more than 0.0, got 0")):
        bounded(float, "a number", more_than=0.0)("0")
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape("must be under 0.5, got 0.5")):
        bounded(float, "a number", under=0.5)("0.5")


def test_nan_passes_no_bound() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        bounded(float, "a number", more_than=0.0)("nan")
