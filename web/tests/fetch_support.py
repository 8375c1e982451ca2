"""What the image_url fetcher's tests share: a real local HTTP(S) server, handlers, limits."""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from web.api.fetch import (
    FetchLimits,
    ImageUrlRefused,
    fetch_image,
    networks,
)

LOOPBACK = networks(["127.0.0.0/8"])
Handler = Callable[[BaseHTTPRequestHandler], None]


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 120, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class LocalServer:
    """A real HTTP(S) server on loopback and what it was asked."""

    port: int
    requests: list[dict[str, str]] = field(default_factory=list)
    connections: int = 0
    sni: list[str | None] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    record: LocalServer

    def get_request(self) -> tuple[socket.socket, object]:
        request = super().get_request()
        self.record.connections += 1
        return request


def start_server(
    handle: Handler, *, tls: ssl.SSLContext | None = None
) -> tuple[LocalServer, Callable[[], None]]:
    """Serves GETs with `handle` on a free loopback port; returns the record and a stop function."""

    class RequestHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            record.requests.append({k.lower(): v for k, v in self.headers.items()})
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                handle(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), RequestHandler)
    record = LocalServer(port=server.server_address[1])
    server.record = record
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return record, stop


def send(body: bytes, *, content_type: str = "image/png", status: int = 200) -> Handler:
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


def limits(**overrides: object) -> FetchLimits:
    values: dict[str, object] = {"max_bytes": 64 * 1024, "timeout_s": 2.0, "allow_networks": ()}
    values.update(overrides)
    return FetchLimits(**values)  # type: ignore[arg-type]


def names(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def refusal(url: str, **kwargs: object) -> ImageUrlRefused:
    fetch_limits = kwargs.pop("limits", limits())
    with pytest.raises(ImageUrlRefused) as caught:
        fetch_image(url, limits=fetch_limits, **kwargs)  # type: ignore[arg-type]
    return caught.value
