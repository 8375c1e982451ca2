"""The image_url fetcher against real local servers: schemes, addresses, redirects, size, time."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from servicekit.errors import InvalidImage
from servicekit.images import ImageLimits, decode_image
from servicekit.settings import SettingsError
from web.api import conf
from web.api.fetch import (
    address_is_public,
    fetch_image,
    limits_from_settings,
)
from web.tests.fetch_support import (
    LOOPBACK,
    Handler,
    LocalServer,
    limits,
    names,
    png_bytes,
    refusal,
    send,
    start_server,
)


@pytest.fixture
def serve() -> Iterator[Callable[..., LocalServer]]:
    stops: list[Callable[[], None]] = []

    def start(handle: Handler, *, tls: ssl.SSLContext | None = None) -> LocalServer:
        record, stop = start_server(handle, tls=tls)
        stops.append(stop)
        return record

    yield start
    for stop in stops:
        stop()


# --- what is refused before any connection -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://images.example.com/photo.jpg",
        "gopher://127.0.0.1:70/",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//images.example.com/photo.jpg",
        "images.example.com/photo.jpg",
    ],
)
def test_it_refuses_every_scheme_but_http_and_https(url: str) -> None:
    error = refusal(url)
    assert error.reason == "IMAGE_URL_SCHEME"
    assert "http:// or https://" in error.message


def test_it_refuses_a_user_name_or_password_in_the_url() -> None:
    assert refusal("https://user:secret@images.example.com/a.png").reason == (
        "IMAGE_URL_CREDENTIALS"
    )


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "127.1",
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f.0.0.1",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.5.4",
        "192.168.1.10",
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "169.254.169.254",  # the cloud metadata service
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[::127.0.0.1]",  # IPv4-compatible
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[fe80::1]",
        "[fc00::1]",
        "[fec0::1]",  # site-local
        "[ff02::1]",
    ],
)
def test_it_refuses_local_private_and_reserved_addresses_without_connecting(
    host: str, serve: Callable[..., LocalServer]
) -> None:
    server = serve(send(png_bytes()))
    error = refusal(f"http://{host}:{server.port}/photo.png")
    assert error.reason == "IMAGE_URL_ADDRESS"
    assert "public" in error.message
    assert server.connections == 0


def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    resolver = names({"images.example.com": ["10.0.0.7"]})
    assert refusal("http://images.example.com/a.png", resolver=resolver).reason == (
        "IMAGE_URL_ADDRESS"
    )


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    resolver = names({"images.example.com": ["93.184.216.34", "2606:2800:220:1::1", "127.0.0.1"]})
    assert refusal("https://images.example.com/a.png", resolver=resolver).reason == (
        "IMAGE_URL_ADDRESS"
    )


def test_a_name_that_does_not_resolve_is_refused() -> None:
    error = refusal("http://nowhere.invalid/a.png", resolver=names({}))
    assert error.reason == "IMAGE_URL_UNRESOLVED"


def test_a_lookup_that_hangs_ends_at_the_deadline() -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(1.5)
        return ["93.184.216.34"]

    started = time.monotonic()
    error = refusal("http://slow.example/a.png", resolver=slow, limits=limits(timeout_s=0.3))
    assert error.reason == "IMAGE_URL_TIMEOUT"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("8.8.8.8", True),
        ("2606:2800:220:1::1", True),
        ("2002:5db8:d822::1", True),  # 6to4 of a public address
        ("198.18.0.1", False),  # benchmarking
        ("192.0.2.1", False),  # documentation
        ("2001:db8::1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_it_tells_public_addresses_from_the_others(address: str, public: bool) -> None:
    assert address_is_public(ipaddress.ip_address(address)) is public


def test_an_allowed_network_is_exempt_for_tests_and_private_deployments() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    assert not address_is_public(loopback)
    assert address_is_public(loopback, LOOPBACK)
    assert not address_is_public(ipaddress.ip_address("10.0.0.1"), LOOPBACK)


# --- against a real server on loopback (allowed explicitly) ---------------------------------------


def test_it_fetches_from_the_checked_address_with_the_urls_host_name(
    serve: Callable[..., LocalServer],
) -> None:
    server = serve(send(png_bytes(), content_type="text/html"))
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    data = fetch_image(
        f"http://images.test:{server.port}/photos/lesion%201.png?size=large",
        limits=limits(allow_networks=LOOPBACK),
        resolver=resolve,
    )
    assert data == png_bytes()
    assert lookups == ["images.test"]  # resolved once; the connection used that address
    [request] = server.requests
    assert request["host"] == f"images.test:{server.port}"
    assert request["accept-encoding"] == "identity"
    # The header said text/html: only the bytes decide what it is.
    assert decode_image(data, ImageLimits()).size == (24, 16)


def test_the_content_type_header_does_not_make_html_an_image(
    serve: Callable[..., LocalServer],
) -> None:
    server = serve(send(b"<html><body>not a photo</body></html>", content_type="image/png"))
    data = fetch_image(
        f"http://127.0.0.1:{server.port}/a.png", limits=limits(allow_networks=LOOPBACK)
    )
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, ImageLimits())
    assert caught.value.reason == "IMAGE_UNREADABLE"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_not_followed(status: int, serve: Callable[..., LocalServer]) -> None:
    target = serve(send(png_bytes()))

    def redirect(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        request.send_header("Location", f"http://127.0.0.1:{target.port}/a.png")
        request.send_header("Content-Length", "0")
        request.end_headers()

    server = serve(redirect)
    error = refusal(f"http://127.0.0.1:{server.port}/a.png", limits=limits(allow_networks=LOOPBACK))
    assert error.reason == "IMAGE_URL_REDIRECT"
    assert "redirects" in error.message
    assert target.connections == 0


def test_an_error_status_is_refused(serve: Callable[..., LocalServer]) -> None:
    server = serve(send(b"gone", status=404))
    error = refusal(f"http://127.0.0.1:{server.port}/a.png", limits=limits(allow_networks=LOOPBACK))
    assert (error.reason, error.message) == (
        "IMAGE_URL_STATUS",
        "the image URL answered HTTP 404, not the image",
    )


def test_an_image_larger_than_the_cap_is_refused_by_its_declared_length(
    serve: Callable[..., LocalServer],
) -> None:
    server = serve(send(b"\x89PNG" + b"\x00" * 70_000))
    with pytest.raises(InvalidImage) as caught:
        fetch_image(f"http://127.0.0.1:{server.port}/a.png", limits=limits(allow_networks=LOOPBACK))
    assert caught.value.reason == "IMAGE_TOO_LARGE"


def test_an_endless_body_without_a_length_is_cut_off_at_the_cap(
    serve: Callable[..., LocalServer],
) -> None:
    sent: list[int] = []

    def endless(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "image/png")
        request.end_headers()  # no Content-Length: the body ends when the connection does
        for _ in range(2000):  # 128 MB if nobody stops reading
            request.wfile.write(b"\x00" * 65536)
            sent.append(65536)

    server = serve(endless)
    started = time.monotonic()
    with pytest.raises(InvalidImage) as caught:
        fetch_image(f"http://127.0.0.1:{server.port}/a.png", limits=limits(allow_networks=LOOPBACK))
    assert caught.value.reason == "IMAGE_TOO_LARGE"
    assert time.monotonic() - started < 1.0


def test_a_server_that_drips_the_body_is_cut_off_at_the_deadline(
    serve: Callable[..., LocalServer],
) -> None:
    def drip(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", "1000")
        request.end_headers()
        for _ in range(40):  # a byte every 0.1 s: each read is quick, the whole is not
            request.wfile.write(b"\x00")
            request.wfile.flush()
            time.sleep(0.1)

    server = serve(drip)
    started = time.monotonic()
    error = refusal(
        f"http://127.0.0.1:{server.port}/a.png",
        limits=limits(allow_networks=LOOPBACK, timeout_s=0.5),
    )
    assert error.reason == "IMAGE_URL_TIMEOUT"
    assert "0.5 seconds" in error.message
    assert time.monotonic() - started < 1.0


def test_a_server_that_never_answers_is_cut_off_at_the_deadline() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts connections, never reads or answers
        started = time.monotonic()
        error = refusal(
            f"http://127.0.0.1:{silent.getsockname()[1]}/a.png",
            limits=limits(allow_networks=LOOPBACK, timeout_s=0.4),
        )
    assert error.reason == "IMAGE_URL_TIMEOUT"
    assert time.monotonic() - started < 1.0


def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = refusal(f"http://127.0.0.1:{port}/a.png", limits=limits(allow_networks=LOOPBACK))
    assert error.reason == "IMAGE_URL_UNREACHABLE"


# --- https: connected by address, verified by name ------------------------------------------------


def certificate_for(name: str, folder: Path) -> tuple[Path, Path]:
    """Writes a self-signed certificate for `name` and its key; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_server(
    serve: Callable[..., LocalServer], tmp_path: Path
) -> tuple[LocalServer, ssl.SSLContext]:
    """An HTTPS server on loopback for images.test, and a client context that trusts it."""
    cert, key = certificate_for("images.test", tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    seen: list[str | None] = []

    def remember(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        seen.append(name)

    server_tls.sni_callback = remember
    server = serve(send(png_bytes()), tls=server_tls)
    server.sni = seen
    return server, ssl.create_default_context(cafile=str(cert))


def test_https_connects_by_address_and_checks_the_certificate_for_the_host_name(
    https_server: tuple[LocalServer, ssl.SSLContext],
) -> None:
    server, trust = https_server
    data = fetch_image(
        f"https://images.test:{server.port}/a.png",
        limits=limits(allow_networks=LOOPBACK),
        resolver=names({"images.test": ["127.0.0.1"]}),
        ssl_context=trust,
    )
    assert data == png_bytes()
    assert server.sni == ["images.test"]
    assert server.requests[0]["host"] == f"images.test:{server.port}"


def test_https_refuses_a_certificate_for_another_name(
    https_server: tuple[LocalServer, ssl.SSLContext],
) -> None:
    server, trust = https_server
    error = refusal(
        f"https://other.test:{server.port}/a.png",
        limits=limits(allow_networks=LOOPBACK),
        resolver=names({"other.test": ["127.0.0.1"]}),
        ssl_context=trust,
    )
    assert error.reason == "IMAGE_URL_TLS"
    assert server.requests == []


# --- the settings ---------------------------------------------------------------------------------


def test_the_allow_list_setting_is_read_as_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_IMAGE_URL_ALLOW_NETWORKS", " 10.20.0.0/16, 127.0.0.1 ,,fd00::/8")
    assert conf._networks("WEB_IMAGE_URL_ALLOW_NETWORKS") == [
        "10.20.0.0/16",
        "127.0.0.1/32",
        "fd00::/8",
    ]


def test_a_bad_allow_list_stops_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_IMAGE_URL_ALLOW_NETWORKS", "10.0.0.0/8,intranet")
    with pytest.raises(SettingsError, match=r"WEB_IMAGE_URL_ALLOW_NETWORKS.*'intranet'"):
        conf._networks("WEB_IMAGE_URL_ALLOW_NETWORKS")


def test_by_default_nothing_is_exempt_and_the_cap_is_the_upload_limit(settings: Any) -> None:
    del settings.WEB_IMAGE_URL_ALLOW_NETWORKS
    settings.WEB_MAX_IMAGE_BYTES = 5 * 2**20
    found = limits_from_settings()
    assert (found.allow_networks, found.max_bytes, found.timeout_s) == ((), 5 * 2**20, 10.0)
