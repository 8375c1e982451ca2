"""Calls point one way: callers -> gateway -> services; no service calls the gateway's registry."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The gateway implements the registry; the web tier and the `medimg` command are its
# callers, as are the cross-process tests. Everything else is on the far side of the
# gateway and must never call back.
CALLERS = {"gateway", "web", "medimg_cli", "tests", "protos"}
REGISTRY_MODULES = {"model_registry_pb2", "model_registry_pb2_grpc"}
REGISTRY_NAMES = {"ModelRegistryStub", "RegisterModelRequest", "UnregisterModelRequest"}
REGISTRY_SERVICE = "medimg.v1.ModelRegistry"


def registry_uses(source: str) -> list[str]:
    """Returns how a module's source reaches the gateway's ModelRegistry, one line per use."""
    uses = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.ImportFrom):
            modules = {(node.module or "").rpartition(".")[2], *(a.name for a in node.names)}
            hits = modules & (REGISTRY_MODULES | REGISTRY_NAMES)
        elif isinstance(node, ast.Import):
            hits = {a.name.rpartition(".")[2] for a in node.names} & REGISTRY_MODULES
        elif isinstance(node, ast.Attribute | ast.Name):
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            hits = {name} & (REGISTRY_MODULES | REGISTRY_NAMES)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A generic call by method path ("/medimg.v1.ModelRegistry/RegisterModel").
            hits = {REGISTRY_SERVICE} if REGISTRY_SERVICE in node.value else set()
        else:
            continue
        uses += [f"line {line}: {hit}" for hit in sorted(hits)]
    return uses


def service_modules() -> Iterator[Path]:
    """Yields every Python file of the packages beyond the gateway (services, servicekit...)."""
    for package in sorted(ROOT.iterdir()):
        if package.name in CALLERS or not (package / "__init__.py").is_file():
            continue
        yield from sorted(package.rglob("*.py"))


def test_the_check_sees_each_way_of_calling_the_registry() -> None:
    assert registry_uses("from medimg.v1 import model_registry_pb2_grpc\n")
    assert registry_uses("import medimg.v1.model_registry_pb2 as registry\n")
    assert registry_uses("stub = grpc_module.ModelRegistryStub(channel)\n")
    assert registry_uses("channel.unary_unary('/medimg.v1.ModelRegistry/RegisterModel')\n")
    assert registry_uses("from medimg.v1 import trainer_service_pb2\n") == []


def test_no_service_package_calls_the_gateways_registry() -> None:
    modules = list(service_modules())
    names = {path.relative_to(ROOT).parts[0] for path in modules}
    # The packages this guards: a rename must not leave it checking nothing.
    assert {"trainer_service", "skin_service", "mri_service", "servicekit"} <= names
    found = {
        str(path.relative_to(ROOT)): uses
        for path in modules
        if (uses := registry_uses(path.read_text(encoding="utf-8")))
    }
    assert found == {}, "services must not call the gateway; the gateway calls them"
