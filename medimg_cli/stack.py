"""Plans `medimg up`: which components start, and the command and environment of each."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from medimg_cli.components import (
    BY_NAME,
    COMPONENTS,
    DICOM,
    GATEWAY,
    LOOPBACK,
    WEB,
    Component,
    gateway_routes,
)
from medimg_cli.supervisor import ChildSpec
from servicekit.settings import env_float

# Flags of `medimg up` that set one component's port; the others are set by env.
PORT_FLAGS: Mapping[str, str] = {GATEWAY.name: "--gateway-port", WEB.name: "--web-port"}
# Beyond its own grace, the time a child gets to flush and exit before SIGKILL.
_STOP_MARGIN_S = 5.0
_DEFAULT_GRACE_S = 10.0


class PlanError(Exception):
    """`medimg up` was asked for something it cannot start."""


def choose_components(
    only: Sequence[str] | None, installed: Callable[[Component], bool]
) -> tuple[list[Component], list[Component]]:
    """Returns the components to start and those skipped as not installed, in start order."""
    if only:
        unknown = [name for name in only if name not in BY_NAME]
        if unknown:
            raise PlanError(
                f"unknown component {', '.join(unknown)}; choose from {', '.join(BY_NAME)}"
            )
    wanted = [c for c in COMPONENTS if not only or c.name in only]
    present = [c for c in wanted if installed(c)]
    skipped = [c for c in wanted if not installed(c)]
    return present, skipped


def port_hint(component: Component) -> str:
    """Returns how to give a component another port, for the port-in-use message."""
    flag = PORT_FLAGS.get(component.name)
    if flag is not None:
        return f"pass {flag}"
    return f"set {component.port_variable} (or pass --port-offset)"


def child_environment(
    component: Component,
    ports: Mapping[str, int],
    *,
    base: Mapping[str, str],
    state_dir: Path,
) -> dict[str, str]:
    """Returns the whole environment of one child of `medimg up`.

    The caller's environment passes through, so `SKIN_LOG_LEVEL=DEBUG medimg up`
    works; what `up` decides (hosts, ports, routes) overrides it.
    """
    env = dict(base)
    env["PYTHONUNBUFFERED"] = "1"
    env[f"{component.env_prefix}HOST"] = LOOPBACK
    env[component.port_variable] = str(ports[component.name])
    if component is GATEWAY:
        started = {BY_NAME[name]: port for name, port in ports.items()}
        env["GATEWAY_ROUTES"] = gateway_routes(started)
        env["GATEWAY_STATE_DIR"] = str(state_dir)
    env.update(component.launch(component, ports).env)
    return env


def stop_grace(component: Component, env: Mapping[str, str]) -> float:
    """Returns how long to wait after SIGTERM: the child's own drain delay and grace, plus a margin.

    The child reads the same variables (servicekit's ServerSettings), so a component
    told to drain for longer is not killed halfway through.
    """
    prefix = component.env_prefix
    grace = env_float(env, f"{prefix}GRACE_SECONDS", _DEFAULT_GRACE_S, minimum=0.0, maximum=600.0)
    delay = env_float(env, f"{prefix}DRAIN_DELAY_SECONDS", 0.0, minimum=0.0, maximum=120.0)
    return delay + grace + _STOP_MARGIN_S


def child_specs(
    components: Iterable[Component],
    ports: Mapping[str, int],
    *,
    base: Mapping[str, str],
    state_dir: Path,
) -> list[ChildSpec]:
    """Returns what the supervisor runs for each component."""
    specs = []
    for component in components:
        env = child_environment(component, ports, base=base, state_dir=state_dir)
        specs.append(
            ChildSpec(
                name=component.name,
                argv=component.launch(component, ports).argv,
                env=env,
                grace_s=stop_grace(component, env),
            )
        )
    return specs


def where_line(name: str, port: int) -> str:
    """Returns the line that says where to reach a started component."""
    if name == WEB.name:
        return f"{name}: http://{LOOPBACK}:{port}"
    if name == GATEWAY.name:
        return f"{name}: {LOOPBACK}:{port} (gRPC; `medimg models` lists its routes)"
    if name == DICOM.name:
        return f"{name}: {LOOPBACK}:{port} (DICOM C-STORE and C-ECHO, AE title from DICOM_AE_TITLE)"
    return f"{name}: {LOOPBACK}:{port} (gRPC, routed by the gateway)"
