"""The code stays small enough to hold in mind: modules of at most 500 lines, thin servicers.

A module over the limit is split by responsibility. Servicers (and the gateway's proxies)
translate gRPC to plain functions and back: at most 60 lines each.
Test doubles that stand in for a whole remote service are not servicers of the product
and are left out of that rule.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 500
MAX_SERVICER_LINES = 60
GENERATED = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")


def python_files() -> list[str]:
    """Returns the project's own Python files: tracked and new, without generated stubs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(
        path
        for path in listed
        if not path.endswith(GENERATED) and "/migrations/" not in path and (ROOT / path).is_file()
    )


def line_count(path: str) -> int:
    return len((ROOT / path).read_text().splitlines())


def servicers(path: str) -> Iterator[tuple[str, int]]:
    """Yields (name, lines) of every servicer or proxy class a product module defines."""
    tree = ast.parse((ROOT / path).read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [ast.unparse(base) for base in node.bases]
        if node.name.endswith(("Servicer", "Proxy")) or any(b.endswith("Servicer") for b in bases):
            yield node.name, (node.end_lineno or node.lineno) - node.lineno + 1


def is_test_code(path: str) -> bool:
    parts = Path(path).parts
    return "tests" in parts or parts[0] == "tests" or Path(path).name.startswith("test_")


def test_no_module_is_over_500_lines() -> None:
    sizes = {path: line_count(path) for path in python_files()}
    assert sizes, "no module found: the rule reads nothing"
    too_long = {path: size for path, size in sizes.items() if size > MAX_MODULE_LINES}
    assert too_long == {}, "split these by responsibility"


def test_every_servicer_is_thin() -> None:
    found = {
        f"{path}:{name}": size
        for path in python_files()
        if not is_test_code(path)
        for name, size in servicers(path)
    }
    assert found, "no servicer found: the rule reads nothing"
    too_long = {key: size for key, size in found.items() if size > MAX_SERVICER_LINES}
    assert too_long == {}, "move their logic into plain functions"


@pytest.mark.parametrize("path", ["mri_service/servicer.py", "gateway/servicer.py"])
def test_the_rule_sees_the_servicers_of_a_module(path: str) -> None:
    assert list(servicers(path))
