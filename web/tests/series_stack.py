"""The real MRI servicer behind the real gateway, in-process, for the web tier's series tests.

The web tier reaches the MRI service only through the gateway, so its tests of uploads,
jobs and pages run against both, on loopback ports, on an event loop of their own in a
background thread (the web tier's client and Django's test client are synchronous). The
servicer reads every upload with its real ingest (the same refusals, study summaries and
previews as in production); only the two slice models are doubles, so no weights load.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.router import Router
from gateway.servicer import build_bindings
from gateway.settings import GatewaySettings
from mri_service.analysis import SeriesAnalyzer
from mri_service.ingest.limits import IngestLimits
from mri_service.model_card import ModelCard
from mri_service.servicer import MriSeriesServicer, binding
from mri_service.tests.doubles import mean_backends
from servicekit.server import Server
from servicekit.settings import ServerSettings

INPUT_SIZE = 32


def model_card() -> ModelCard:
    """Returns the card of the doubles: a demo model set, 32 px inputs."""
    return ModelCard(
        name="mri-web-test",
        version=1,
        width=0.0625,
        input_size=INPUT_SIZE,
        threshold=0.5,
        data="none",
        demo_model=True,
        trained_on="2026-11-21",
    )


class SeriesStack:
    """The MRI servicer and the gateway in front of it, serving until `stop`."""

    def __init__(self, folder: Path, *, gateway_port: int = 0) -> None:
        self._folder = folder
        self._gateway_port = gateway_port  # 0: any free port
        self._loop = asyncio.new_event_loop()
        self._servers: list[Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.address = ""

    def start(self) -> str:
        """Starts both servers; returns the gateway's address, the web tier's GATEWAY_ADDR."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.address = future.result(timeout=30)
        return self.address

    async def _start(self) -> str:
        spool = self._folder / "spool"
        spool.mkdir()
        analyzer = SeriesAnalyzer(
            mean_backends(INPUT_SIZE),
            model_card(),
            spool_dir=spool,
            limits=IngestLimits(),
            batch_slices=16,
        )
        mri = Server(
            ServerSettings.from_env("MRI_", default_port=0, env={}),
            [binding(MriSeriesServicer(analyzer))],
            lifecycle=analyzer,
        )
        mri_port = await mri.start()
        self._servers.append(mri)
        settings = GatewaySettings.from_env(
            {
                "GATEWAY_PORT": str(self._gateway_port),
                "GATEWAY_STATE_DIR": str(self._folder / "gateway"),
                "GATEWAY_ROUTES": f"mri=series@127.0.0.1:{mri_port}",
            }
        )
        router = Router(settings)
        gateway = Server(settings.server, build_bindings(router), lifecycle=router)
        gateway_port = await gateway.start()
        self._servers.append(gateway)
        return f"127.0.0.1:{gateway_port}"

    def stop(self) -> None:
        """Stops the gateway, then the servicer, then the loop."""

        async def stop_all() -> None:
            for server in reversed(self._servers):
                await server.stop(0)

        asyncio.run_coroutine_threadsafe(stop_all(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def series_stack(*, gateway_port: int = 0) -> Iterator[str]:
    """Runs the stack in a temporary folder; yields the gateway's address.

    `gateway_port` fixes the gateway's port, so a test can point the web tier at it before
    it starts (a service that comes up later).
    """
    with tempfile.TemporaryDirectory(prefix="medimg-web-series-") as folder:
        stack = SeriesStack(Path(folder), gateway_port=gateway_port)
        try:
            yield stack.start()
        finally:
            stack.stop()
