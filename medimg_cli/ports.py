"""Port planning for `medimg up`: which port each component gets, and whether it is free."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterable, Mapping

from medimg_cli.components import Component
from servicekit.settings import env_int


class PortError(Exception):
    """A port cannot be used; the message says which, for what, and what to do."""


def plan_ports(
    components: Iterable[Component],
    env: Mapping[str, str],
    *,
    offset: int = 0,
    overrides: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Returns each component's port: a flag, else its `{PREFIX}PORT`, else default + offset.

    The offset moves only default ports, so that a port set by name stays where it was
    put. A result of 0 means "pick a free one" and is resolved by `resolve_free_ports`.
    """
    overrides = overrides or {}
    ports: dict[str, int] = {}
    for component in components:
        if component.name in overrides:
            ports[component.name] = overrides[component.name]
            continue
        default = component.default_port + offset
        ports[component.name] = env_int(
            env, component.port_variable, default, minimum=0, maximum=65535
        )
    for name, port in ports.items():
        if not 0 <= port <= 65535:
            raise PortError(f"port {port} ({name}) is out of range; ports go from 1 to 65535")
    return ports


def resolve_free_ports(ports: Mapping[str, int], host: str) -> dict[str, int]:
    """Replaces each 0 by a port that is free now, since routes need numbers up front."""
    return {name: port if port != 0 else find_free_port(host) for name, port in ports.items()}


def find_free_port(host: str) -> int:
    """Returns a port on host that nothing listens on at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(host: str, port: int, name: str, hint: str) -> None:
    """Raises PortError when port cannot be listened on, e.g. another program holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR lets the check pass over sockets lingering in TIME_WAIT after a
        # previous run, as the servers' own bind would; no SO_REUSEPORT, because gRPC
        # servers set it and two of them would then silently share one port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortError(
                    f"port {port} ({name}) is already in use; stop the other program or {hint}"
                ) from None
            if exc.errno == errno.EACCES:
                raise PortError(
                    f"port {port} ({name}) needs privileges to listen on; {hint}"
                ) from None
            raise PortError(f"cannot listen on {host}:{port} ({name}): {exc.strerror}") from None


def check_ports_free(host: str, ports: Mapping[str, int], hints: Mapping[str, str]) -> None:
    """Checks every port, then raises one PortError naming all that are taken."""
    problems: list[str] = []
    for name, port in ports.items():
        try:
            check_port_free(host, port, name, hints.get(name, "choose another port"))
        except PortError as exc:
            problems.append(str(exc))
    taken = list(ports.values())
    for port in sorted({port for port in taken if taken.count(port) > 1}):
        sharing = ", ".join(name for name, wanted in ports.items() if wanted == port)
        problems.append(f"port {port} is given to more than one component ({sharing})")
    if problems:
        raise PortError("\n".join(problems))


async def wait_until_listening(host: str, port: int, *, timeout_s: float) -> bool:
    """Returns True once host:port accepts a TCP connection, False after timeout_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return True
