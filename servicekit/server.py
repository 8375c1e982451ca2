"""One bootstrap for every service: health, reflection, interceptors, metrics, TLS, draining."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from servicekit.interceptors import ServiceInterceptor
from servicekit.metrics import start_metrics_server
from servicekit.settings import ServerSettings, TlsSettings

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service a server hosts: its full name and how to add it to a server."""

    name: str
    add_to_server: Callable[[grpc.aio.Server], None]


class Lifecycle(Protocol):
    """What a service does around serving: load and warm up its model, then release it."""

    async def start(self) -> None:
        """Loads the model and runs a warm-up inference; health is SERVING only after this."""
        ...

    async def stop(self) -> None:
        """Releases what start acquired, after in-flight calls have finished."""
        ...


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """Returns the channel options every medimg server uses."""
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Without this, a second server on the same port starts silently and steals calls.
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_age_seconds > 0:
        # A client balancing over a headless Service's pod addresses resolves DNS again
        # only when a connection closes: closing old ones lets new pods receive calls.
        # Calls in flight on a closing connection get the grace to finish.
        options += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
            (
                "grpc.max_connection_age_grace_ms",
                int(settings.max_connection_age_grace_seconds * 1000),
            ),
        ]
    return options


def _server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    client_ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class Server:
    """A gRPC server with medimg's bootstrap; `serve()` runs one until SIGTERM."""

    def __init__(
        self,
        settings: ServerSettings,
        bindings: Sequence[ServiceBinding],
        *,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self._settings = settings
        self._bindings = tuple(bindings)
        self._lifecycle = lifecycle
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics_port = 0

    @property
    def service_names(self) -> tuple[str, ...]:
        """Returns the full names of the hosted services, health excluded."""
        return tuple(binding.name for binding in self._bindings)

    async def start(self) -> int:
        """Binds, starts serving NOT_SERVING, runs the lifecycle start, then turns SERVING.

        Returns:
            The bound port.

        Raises:
            OSError: the address cannot be bound (e.g. the port is taken).
        """
        settings = self._settings
        server = grpc.aio.server(
            interceptors=[ServiceInterceptor(settings.component)],
            options=server_options(settings),
        )
        for binding in self._bindings:
            binding.add_to_server(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = settings.address
        try:
            if settings.tls is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, _server_credentials(settings.tls))
        except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
            raise OSError(f"cannot listen on {address}: is the port already in use?") from exc
        await self._set_all(NOT_SERVING)
        await server.start()
        self._server = server
        logger.info(
            "%s listening on %s:%d (%s)",
            settings.component,
            settings.host,
            self.port,
            "tls" if settings.tls else "plaintext",
        )
        if settings.metrics_port:
            self.metrics_port = start_metrics_server(settings.host, settings.metrics_port)
        if self._lifecycle is not None:
            try:
                await self._lifecycle.start()
            except BaseException:
                await server.stop(0)
                self._server = None
                raise
        await self._set_all(SERVING)
        logger.info("%s ready: %s", settings.component, ", ".join(self.service_names))
        return self.port

    async def stop(self, grace: float | None = None, drain_delay: float | None = None) -> None:
        """Turns NOT_SERVING, then refuses new calls and lets in-flight ones finish.

        Health turns NOT_SERVING first and the server keeps accepting calls for
        `drain_delay` seconds, so that probes and balancers see it go before it refuses
        anything; then new calls are refused and in-flight ones get `grace` seconds.
        """
        if self._server is None:
            return
        settings = self._settings
        grace = settings.grace_seconds if grace is None else grace
        drain_delay = settings.drain_delay_seconds if drain_delay is None else drain_delay
        logger.info(
            "%s draining (delay %.1fs, grace %.1fs)", settings.component, drain_delay, grace
        )
        await self._health.enter_graceful_shutdown()
        if drain_delay:
            await asyncio.sleep(drain_delay)
        await self._server.stop(grace)
        self._server = None
        if self._lifecycle is not None:
            await self._lifecycle.stop()
        logger.info("%s stopped", self._settings.component)

    async def wait_for_termination(self) -> None:
        """Returns when the server has stopped."""
        if self._server is not None:
            await self._server.wait_for_termination()

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in ("", *self.service_names):
            await self._health.set(name, status)


async def serve(
    settings: ServerSettings,
    bindings: Sequence[ServiceBinding],
    *,
    lifecycle: Lifecycle | None = None,
) -> None:
    """Runs a server until SIGTERM or SIGINT, then drains it gracefully."""
    server = Server(settings, bindings, lifecycle=lifecycle)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    await server.start()
    await stop_requested.wait()
    await server.stop()
