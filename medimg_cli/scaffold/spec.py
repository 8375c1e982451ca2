"""What `medimg new-service` is asked for, validated: name, labels, framework, port, checkout."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from medimg_cli.components import (
    BUILT_INS,
    PLUGIN_NAME,
    RESERVED_NAMES,
    Component,
    ComponentError,
    discover_plugins,
)

FRAMEWORKS = ("keras", "torch")
FIRST_PLUGIN_PORT = 50070
MIN_LABELS, MAX_LABELS = 2, 20
LABEL = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Ports of the model servers and the web tier, which are not in the component table's
# ports but would clash in a pod or on a laptop: TF Serving, TorchServe, Django.
MODEL_SERVER_PORTS = frozenset({8000, 8500, 8501, 7070, 7071, 8080, 8081, 8082})


class ScaffoldError(Exception):
    """`medimg new-service` refuses; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class ServiceSpec:
    """A new disease service: what every generated file is rendered from."""

    name: str
    labels: tuple[str, ...]
    framework: str
    port: int

    @property
    def module(self) -> str:
        """Returns the Python package name, `<name>_service`."""
        return f"{self.name}_service"

    @property
    def prefix(self) -> str:
        """Returns the prefix of its environment variables, `<NAME>_`."""
        return f"{self.name.upper()}_"


def check_checkout(root: Path) -> None:
    """Raises ScaffoldError unless root is a medimg checkout (pyproject, servicekit, gateway)."""
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        raise ScaffoldError(f"{root} is not a medimg checkout: it has no pyproject.toml") from None
    if not re.search(r'(?m)^name\s*=\s*"medimg"\s*$', text):
        raise ScaffoldError(f"{root} is not a medimg checkout: {pyproject} is another project's")
    missing = [
        part for part in ("servicekit", "gateway", "medimg_cli") if not (root / part).is_dir()
    ]
    if missing:
        raise ScaffoldError(f"{root} is not a medimg checkout: it has no {', '.join(missing)}/")


def check_name(name: str, components: Iterable[Component]) -> str:
    """Returns name if a new service may take it; raises ScaffoldError saying why not."""
    if not PLUGIN_NAME.fullmatch(name):
        raise ScaffoldError(
            f"{name!r} cannot name a service: use 1 to 20 lower-case letters or digits, "
            "starting with a letter (it names the disease and the Python package "
            "<name>_service, so no dashes)"
        )
    if name in {c.name for c in components}:
        raise ScaffoldError(f"{name!r} is already a component of this checkout; choose another")
    if name in RESERVED_NAMES:
        raise ScaffoldError(f"{name!r} is reserved for a part of the deployment; choose another")
    return name


def parse_labels(text: str) -> tuple[str, ...]:
    """Returns the labels of "a,b,c" in order; raises ScaffoldError on a bad or repeated one."""
    labels = tuple(part.strip() for part in text.split(","))
    if any(not label for label in labels):
        raise ScaffoldError("--labels has an empty label; write them as a,b,c")
    for label in labels:
        if not LABEL.fullmatch(label):
            raise ScaffoldError(
                f"label {label!r} must be 1 to 40 lower-case letters, digits or underscores, "
                "starting with a letter"
            )
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ScaffoldError(f"label {', '.join(repeated)} is given more than once")
    if not MIN_LABELS <= len(labels) <= MAX_LABELS:
        raise ScaffoldError(
            f"a service needs {MIN_LABELS} to {MAX_LABELS} labels, got {len(labels)}"
        )
    return labels


def taken_ports(components: Iterable[Component]) -> dict[int, str]:
    """Returns every port already in use by the stack, with what uses it."""
    taken = {port: "a model server or the web tier" for port in MODEL_SERVER_PORTS}
    taken.update({c.default_port: c.name for c in components})
    return taken


def choose_port(requested: int | None, components: Iterable[Component]) -> int:
    """Returns requested if free, else the first port from 50070 up that no component uses."""
    taken = taken_ports(components)
    if requested is not None:
        if not 1024 <= requested <= 65535:
            raise ScaffoldError(
                f"port {requested} cannot be used: choose one from 1024 to 65535 "
                "(the containers run as a non-root user)"
            )
        if requested in taken:
            raise ScaffoldError(f"port {requested} is already {taken[requested]}'s; choose another")
        return requested
    port = FIRST_PLUGIN_PORT
    while port in taken:
        port += 1
    return port


def known_components(root: Path) -> tuple[Component, ...]:
    """Returns the built-ins and the plug-ins already in the checkout at root."""
    try:
        return (*BUILT_INS, *discover_plugins(root))
    except ComponentError as exc:
        raise ScaffoldError(f"fix the existing plug-in first: {exc}") from None


def build_spec(
    root: Path, *, name: str, labels: str, framework: str, port: int | None
) -> ServiceSpec:
    """Returns the validated spec of a new service in the checkout at root.

    Raises:
        ScaffoldError: root is not a checkout, or a name, label, framework or port is
            refused, or the package already exists.
    """
    check_checkout(root)
    components = known_components(root)
    check_name(name, components)
    if (root / f"{name}_service").exists():
        raise ScaffoldError(
            f"{root / f'{name}_service'} already exists; new-service never overwrites a package"
        )
    if framework not in FRAMEWORKS:
        raise ScaffoldError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    return ServiceSpec(
        name=name,
        labels=parse_labels(labels),
        framework=framework,
        port=choose_port(port, components),
    )
