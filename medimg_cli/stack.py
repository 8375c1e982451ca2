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
    TRAINER,
    WEB,
    Component,
    gateway_routes,
)
from medimg_cli.supervisor import ChildSpec
from servicekit.settings import env_float

# Flags of `medimg up` that set one component's port; the others are set by env.
PORT_FLAGS: Mapping[str, str] = {GATEWAY.name: "--gateway-port", WEB.name: "--web-port"}
# Where `medimg up` keeps every component's state when the caller names one folder for it.
STATE_DIR_ENV = "MEDIMG_STATE_DIR"
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


def state_root(cwd: Path, env: Mapping[str, str], port_offset: int = 0) -> Path:
    """Returns the folder under which `medimg up` keeps every component's state.

    `MEDIMG_STATE_DIR` when set; else `var/` of the folder `up` runs in, never the
    checkout's, so that a stack started elsewhere has its own database, media and queue.
    A stack moved by `--port-offset N` gets `var/offset-N/`: two stacks side by side in
    one folder share nothing either.
    """
    named = env.get(STATE_DIR_ENV, "").strip()
    if named:
        return Path(named).expanduser().absolute()
    root = cwd / "var"
    return root / f"offset-{port_offset}" if port_offset else root


def state_environment(component: Component, root: Path) -> dict[str, str]:
    """Returns the settings that put one component's state under root.

    The web tier's SQLite database (and with it the in-process job queue) and media, the
    gateway's registry, the trainer's projects, the DICOM receiver's spool. Model
    servers and the MRI service keep nothing between runs (its spool is per call).
    """
    if component is GATEWAY:
        return {"GATEWAY_STATE_DIR": str(root / "gateway")}
    if component is TRAINER:
        return {"TRAINER_DATA_DIR": str(root / "trainer")}
    if component is WEB:
        return {
            "DATABASE_URL": f"sqlite:///{root / 'web' / 'db.sqlite3'}",
            "WEB_MEDIA_ROOT": str(root / "web" / "media"),
        }
    if component is DICOM:
        return {"DICOM_SPOOL_DIR": str(root / "dicom")}
    return {}


def child_environment(
    component: Component,
    ports: Mapping[str, int],
    *,
    base: Mapping[str, str],
    state_root: Path,
) -> dict[str, str]:
    """Returns the whole environment of one child of `medimg up`.

    The caller's environment passes through, so `SKIN_LOG_LEVEL=DEBUG medimg up`
    works; what `up` decides (hosts, ports, routes) overrides it. Where state goes
    (`state_environment`) is only a default: `DATABASE_URL=postgres://... medimg up`
    keeps the caller's database.
    """
    env = dict(base)
    env["PYTHONUNBUFFERED"] = "1"
    env[f"{component.env_prefix}HOST"] = LOOPBACK
    env[component.port_variable] = str(ports[component.name])
    if component is GATEWAY:
        started = {BY_NAME[name]: port for name, port in ports.items()}
        env["GATEWAY_ROUTES"] = gateway_routes(started)
    env.update(component.launch(component, ports).env)
    for key, value in state_environment(component, state_root).items():
        if not base.get(key, "").strip():
            env[key] = value
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
    state_root: Path,
) -> list[ChildSpec]:
    """Returns what the supervisor runs for each component."""
    specs = []
    for component in components:
        env = child_environment(component, ports, base=base, state_root=state_root)
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
