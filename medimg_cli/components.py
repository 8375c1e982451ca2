"""The table of medimg's components: what `medimg up` and `medimg serve` can start."""

from __future__ import annotations

import enum
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Where `up` runs everything, and the address the gateway and web use to reach it.
LOOPBACK = "127.0.0.1"


class ServiceKind(enum.Enum):
    """Contract a service serves behind the gateway; the value is the word in GATEWAY_ROUTES."""

    IMAGE = "image"
    SERIES = "series"


@dataclass(frozen=True)
class Launch:
    """How to start one component: the command line and the environment it adds."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Component:
    """One program of the stack.

    `kind` is set for the gRPC services the gateway routes to, and None for the
    gateway itself and the web tier. `launch` builds the command that starts it,
    given the ports every started component was given.
    """

    name: str
    module: str
    env_prefix: str
    default_port: int
    kind: ServiceKind | None
    launch: Callable[[Component, Mapping[str, int]], Launch]

    @property
    def port_variable(self) -> str:
        """Returns the environment variable that holds the component's port."""
        return f"{self.env_prefix}PORT"

    def is_installed(self) -> bool:
        """Tells whether this checkout holds the component's package with a `__main__`."""
        return module_has_main(self.module)


def module_has_main(module: str) -> bool:
    """Tells whether `python -m module` can run, without importing the module."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is None:
        return True
    # Looking for the file instead of find_spec("pkg.__main__") keeps the package's
    # __init__ (and whatever heavy imports it does) out of the supervisor's process.
    return any((Path(place) / "__main__.py").is_file() for place in spec.submodule_search_locations)


def python_module_launch(component: Component, ports: Mapping[str, int]) -> Launch:
    """Starts a component as `python -m <module>`; it reads its settings from env."""
    return Launch(argv=(sys.executable, "-m", component.module))


def web_launch(component: Component, ports: Mapping[str, int]) -> Launch:
    """Starts the Django ASGI web tier.

    The web package does not exist yet; whoever writes it owns this function. Until
    then it states the contract `medimg up` expects: `python -m web` serves the ASGI
    application on WEB_HOST:WEB_PORT and calls the gateway at WEB_GATEWAY_ADDRESS.
    """
    env = {}
    if "gateway" in ports:
        env["WEB_GATEWAY_ADDRESS"] = f"{LOOPBACK}:{ports['gateway']}"
    return Launch(argv=(sys.executable, "-m", component.module), env=env)


GATEWAY = Component("gateway", "gateway", "GATEWAY_", 50051, None, python_module_launch)
SKIN = Component("skin", "skin_service", "SKIN_", 50061, ServiceKind.IMAGE, python_module_launch)
MRI = Component("mri", "mri_service", "MRI_", 50062, ServiceKind.SERIES, python_module_launch)
TRAINER = Component(
    "trainer", "trainer_service", "TRAINER_", 50063, ServiceKind.IMAGE, python_module_launch
)
WEB = Component("web", "web", "WEB_", 8000, None, web_launch)

# Start order: the services before the gateway that routes to them, the web tier last.
COMPONENTS: tuple[Component, ...] = (SKIN, MRI, TRAINER, GATEWAY, WEB)
BY_NAME: Mapping[str, Component] = {component.name: component for component in COMPONENTS}


def gateway_routes(started: Mapping[Component, int], host: str = LOOPBACK) -> str:
    """Returns GATEWAY_ROUTES for the started services: "skin=image@127.0.0.1:50061;…"."""
    return ";".join(
        f"{component.name}={component.kind.value}@{host}:{port}"
        for component, port in started.items()
        if component.kind is not None
    )
