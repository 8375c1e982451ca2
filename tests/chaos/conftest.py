"""The fault suite's table: each scenario adds a row, printed at the end of the run."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

# `make chaos` sets it: the full soak; `make test` runs the short form.
FULL = os.environ.get("CHAOS_FULL", "") == "1"


@dataclass(frozen=True)
class Row:
    """One scenario's outcome: what was done to what, the figures, and whether it held."""

    scenario: str
    figures: str
    held: bool


ROWS: list[Row] = []


def record(scenario: str, figures: str, held: bool) -> None:
    """Adds a scenario's row to the table (before the test asserts, so a failure shows too)."""
    ROWS.append(Row(scenario, figures, held))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    form = "full" if FULL else "short"
    terminalreporter.section(f"fault suite ({form} form)")
    width = max(len(row.scenario) for row in ROWS)
    for row in ROWS:
        verdict = "held" if row.held else "FAILED"
        terminalreporter.write_line(f"{row.scenario:<{width}}  {verdict:<6}  {row.figures}")
