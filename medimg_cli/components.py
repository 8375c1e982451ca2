"""The table of medimg's components: what `medimg up` and `medimg serve` can start."""

from __future__ import annotations

import enum
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where `up` runs everything, and the address the gateway and web use to reach it.
LOOPBACK = "127.0.0.1"
# The checkout this package belongs to: plug-in services sit beside medimg_cli.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
# What `medimg new-service` writes into a plug-in's package to put it in the table.
PLUGIN_FILE = "component.json"
PLUGIN_FIELDS = ("name", "module", "prefix", "port", "kind")
# A disease name that is also a Python package prefix: no dashes, unlike the gateway's rule.
PLUGIN_NAME = re.compile(r"[a-z][a-z0-9]{0,19}")


class ServiceKind(enum.Enum):
    """Contract a service serves behind the gateway; the value is the word in GATEWAY_ROUTES."""

    IMAGE = "image"
    SERIES = "series"
    # The teachable machine: the gateway proxies its TrainerService; not a disease itself.
    TRAINER = "trainer"


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
    # Set for plug-in services: the folder of their package, found without installing it.
    package_dir: Path | None = None

    @property
    def port_variable(self) -> str:
        """Returns the environment variable that holds the component's port."""
        return f"{self.env_prefix}PORT"

    def is_installed(self) -> bool:
        """Tells whether this checkout holds the component's package with a `__main__`."""
        if self.package_dir is not None:
            return (self.package_dir / "__main__.py").is_file()
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
    """Starts the Django ASGI web tier: `python -m web` serves on WEB_HOST:WEB_PORT.

    It calls the gateway at GATEWAY_ADDR. Unless the caller's environment says otherwise
    (WEB_DEBUG, or a SECRET_KEY for a production-like run), it runs in development mode:
    a throwaway SECRET_KEY, plain HTTP on loopback, and SQLite migrated at start, so a
    fresh clone needs no other command (web/README.md).
    """
    env = {}
    if "gateway" in ports:
        env["GATEWAY_ADDR"] = f"{LOOPBACK}:{ports['gateway']}"
    if not {"WEB_DEBUG", "SECRET_KEY", "SECRET_KEY_FILE"} & set(os.environ):
        env["WEB_DEBUG"] = "true"
    return Launch(argv=(sys.executable, "-m", component.module), env=env)


def dicom_launch(component: Component, ports: Mapping[str, int]) -> Launch:
    """Starts the DICOM receiver, a gateway client: told where the gateway is and where to spool.

    It listens for C-STORE on DICOM_BIND_ADDRESS:DICOM_PORT (default 127.0.0.1:11112;
    `up` does not set the address, so DICOM_BIND_ADDRESS=0.0.0.0 opens it to a PACS), sends
    stable studies to the gateway's AnalyzeSeries and the results to DICOM_DESTINATION
    (dicom_receiver/README.md). Its spool defaults to var/dicom under the current directory,
    beside the gateway's state, unless DICOM_SPOOL_DIR says otherwise.
    """
    env = {}
    if "gateway" in ports:
        env[f"{component.env_prefix}GATEWAY_ADDRESS"] = f"{LOOPBACK}:{ports['gateway']}"
    spool = f"{component.env_prefix}SPOOL_DIR"
    if not os.environ.get(spool, "").strip():
        env[spool] = str(Path.cwd() / "var" / "dicom")
    return Launch(argv=(sys.executable, "-m", component.module), env=env)


def plugin_launch(component: Component, ports: Mapping[str, int]) -> Launch:
    """Starts a plug-in service as `python -m <module>` with its checkout on PYTHONPATH.

    A package scaffolded after `pip install -e .` is not known to the installed
    finder, so the folder that holds it goes first on the child's import path.
    """
    if component.package_dir is None:
        return python_module_launch(component, ports)
    paths = [str(component.package_dir.parent), os.environ.get("PYTHONPATH", "")]
    env = {"PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    return Launch(argv=(sys.executable, "-m", component.module), env=env)


GATEWAY = Component("gateway", "gateway", "GATEWAY_", 50051, None, python_module_launch)
SKIN = Component("skin", "skin_service", "SKIN_", 50061, ServiceKind.IMAGE, python_module_launch)
MRI = Component("mri", "mri_service", "MRI_", 50062, ServiceKind.SERIES, python_module_launch)
# The trainer is told nothing of the gateway: the gateway asks it for its published models.
TRAINER = Component(
    "trainer", "trainer_service", "TRAINER_", 50063, ServiceKind.TRAINER, python_module_launch
)
# The DICOM receiver is a gateway client like the web tier: no kind, started after the gateway.
DICOM = Component("dicom", "dicom_receiver", "DICOM_", 11112, None, dicom_launch)
WEB = Component("web", "web", "WEB_", 8000, None, web_launch)

BUILT_INS: tuple[Component, ...] = (SKIN, MRI, TRAINER, GATEWAY, DICOM, WEB)
# Names a plug-in may not take: the built-ins, and the other objects of the k8s/ deployment.
RESERVED_NAMES = frozenset(
    {c.name for c in BUILT_INS} | {"tfserving", "torchserve", "postgres", "redis", "medimg"}
)


class ComponentError(Exception):
    """A plug-in's component.json is unreadable or wrong; the message names the file."""


def load_plugin(path: Path) -> Component:
    """Returns the component a plug-in's component.json describes.

    The file is `{"name", "module", "prefix", "port", "kind"}`, as `medimg new-service`
    writes it into `<name>_service/`. Raises ComponentError naming the file and the problem.
    """
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ComponentError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(raw, dict) or set(raw) != set(PLUGIN_FIELDS):
        found = ", ".join(sorted(raw)) if isinstance(raw, dict) else type(raw).__name__
        raise ComponentError(
            f"{path}: expected an object with exactly {', '.join(PLUGIN_FIELDS)}; found {found}"
        )
    name, module, prefix, port, kind = (raw[key] for key in PLUGIN_FIELDS)
    if not isinstance(name, str) or not PLUGIN_NAME.fullmatch(name):
        raise ComponentError(
            f"{path}: name {name!r} must be 1 to 20 lower-case letters or digits, "
            "starting with a letter"
        )
    expected = {"module": f"{name}_service", "prefix": f"{name.upper()}_"}
    for key, value in (("module", module), ("prefix", prefix)):
        if value != expected[key]:
            raise ComponentError(f"{path}: {key} must be {expected[key]!r}, got {value!r}")
    if path.parent.name != module:
        raise ComponentError(f"{path}: the file must sit in the package folder {module}/")
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise ComponentError(f"{path}: port must be an integer from 1024 to 65535, got {port!r}")
    if kind != ServiceKind.IMAGE.value:
        raise ComponentError(f"{path}: kind must be 'image', got {kind!r}")
    return Component(
        name,
        module,
        prefix,
        port,
        ServiceKind.IMAGE,
        plugin_launch,
        package_dir=path.parent.resolve(),
    )


def discover_plugins(root: Path, taken: Iterable[Component] = BUILT_INS) -> tuple[Component, ...]:
    """Returns the plug-in services of the checkout at root, sorted by folder name.

    A plug-in is any `<root>/*_service/component.json`. Raises ComponentError for a
    malformed file, or for a name or port another component already has.
    """
    found: list[Component] = []
    names = {c.name: f"the built-in {c.name}" for c in taken}
    names.update({name: "a reserved name" for name in RESERVED_NAMES if name not in names})
    ports = {c.default_port: c.name for c in taken}
    for path in sorted(root.glob(f"*_service/{PLUGIN_FILE}")):
        plugin = load_plugin(path)
        if plugin.name in names:
            raise ComponentError(f"{path}: name {plugin.name!r} is {names[plugin.name]}")
        if plugin.default_port in ports:
            raise ComponentError(
                f"{path}: port {plugin.default_port} is already {ports[plugin.default_port]}'s"
            )
        names[plugin.name] = f"{path.parent.name}'s too"
        ports[plugin.default_port] = plugin.name
        found.append(plugin)
    return tuple(found)


def component_table(plugins: Iterable[Component]) -> tuple[Component, ...]:
    """Returns the components in start order: services, gateway, then the DICOM receiver and web.

    The services (built-in, then plug-ins) start before the gateway, which routes to every
    service started with it; its clients start after it.
    """
    return (SKIN, MRI, TRAINER, *plugins, GATEWAY, DICOM, WEB)


def _discover_at_import() -> tuple[tuple[Component, ...], str | None]:
    try:
        return discover_plugins(REPOSITORY_ROOT), None
    except ComponentError as exc:
        return (), str(exc)


# Read once when the command starts. A malformed plug-in does not stop the commands that
# never start anything (`diagnose`, `models`); `up` and `serve` report it and refuse.
PLUGINS, PLUGIN_ERROR = _discover_at_import()
COMPONENTS: tuple[Component, ...] = component_table(PLUGINS)
BY_NAME: Mapping[str, Component] = {component.name: component for component in COMPONENTS}


def gateway_routes(started: Mapping[Component, int], host: str = LOOPBACK) -> str:
    """Returns GATEWAY_ROUTES for the started services: "skin=image@127.0.0.1:50061;…"."""
    return ";".join(
        f"{component.name}={component.kind.value}@{host}:{port}"
        for component, port in started.items()
        if component.kind is not None
    )
