"""Runs the project's install scripts for the tests that need a tool from Debian or npm."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.processes import ROOT


def installed_tool(script: str, needed_by: str, *, timeout_s: float) -> str:
    """Runs scripts/<script> and returns the last line it printed (the tool's path).

    The scripts do nothing when the tool is there. A test that needs the tool fails, never
    skips, when the script cannot install it, with what the script said.
    """
    path = ROOT / "scripts" / script
    result = subprocess.run(
        ["bash", str(path)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{needed_by} and {path.name} could not install it "
            f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout.strip().splitlines()[-1]
