"""Fetches the image behind a caller's `image_url`, refusing anything but public http(s) servers.

Server-side request forgery is the risk: a URL that makes the web tier read from itself,
the cluster or the cloud's metadata service (169.254.169.254). So:

- only `http` and `https`, no credentials in the URL;
- the host name is resolved once, and every address it resolves to must be public
  (not private, loopback, link-local, multicast, reserved, unspecified, shared
  100.64/10, site-local, nor an IPv6 form that embeds such an IPv4 address);
- the connection goes to an address that was checked (no second lookup that a DNS
  server could answer differently); https sends the host name for SNI and verifies
  the certificate against it;
- redirects are refused, not followed; only 200 is accepted;
- one deadline covers the lookup, the connection and every byte; the body is streamed
  and refused past `max_bytes`;
- the Content-Type header is not trusted: the bytes go to `decode_image`, which decides.

Networks in `allow_networks` are exempt from the public-address rule: for tests and for
private deployments that serve images internally. Nothing here imports Django.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from servicekit.errors import InvalidArgument, InvalidImage

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Returns the addresses a host name resolves to, as strings; may raise OSError.
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_PORTS: Final = {"http": 80, "https": 443}
MAX_URL_LENGTH: Final = 2048
CHUNK_BYTES: Final = 64 * 1024
USER_AGENT: Final = "medimg-image-fetch/1.0"

# Never public, whatever this Python's ipaddress tables say (they changed between 3.11
# releases): checked in addition to is_global, is_private and the other flags.
_NOT_PUBLIC: Final[tuple[IPNetwork, ...]] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# IPv6 prefixes whose last 32 bits are an IPv4 address the packets end up at.
_EMBEDDING_IPV4: Final[tuple[ipaddress.IPv6Network, ...]] = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64, local use
)


class ImageUrlRefused(InvalidArgument, reason="IMAGE_URL_REFUSED"):
    """An `image_url` that is not fetched, or whose fetch failed; the message says why."""


@dataclass(frozen=True)
class FetchLimits:
    """How much, how long and from where an image URL may be fetched."""

    max_bytes: int
    timeout_s: float = 10.0
    allow_networks: tuple[IPNetwork, ...] = field(default=())


@dataclass(frozen=True)
class Target:
    """A checked image URL: where to connect and what to ask for."""

    scheme: str
    host: str  # ASCII (IDNA) host name or IP address, without brackets
    port: int
    path: str  # path and query, percent-encoded
    host_header: str


def networks(values: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Returns CIDR strings (or networks) as networks; raises ValueError for a bad one."""
    return tuple(
        value if not isinstance(value, str) else ipaddress.ip_network(value, strict=False)
        for value in values
    )


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Returns the IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, …)."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    for prefix in _EMBEDDING_IPV4:
        if address in prefix:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_public(address: IPAddress, allow_networks: Sequence[IPNetwork] = ()) -> bool:
    """Tells whether an image may be fetched from this address.

    An address inside `allow_networks` may; otherwise it must be a public unicast address,
    and an IPv6 address that embeds an IPv4 one must embed a public one.
    """
    if any(address.version == net.version and address in net for net in allow_networks):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None and not address_is_public(inner, allow_networks):
            return False
        if address.is_site_local:
            return False
    flagged = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )
    if flagged:
        return False
    return not any(address.version == net.version and address in net for net in _NOT_PUBLIC)


def parse_image_url(url: str) -> Target:
    """Returns the URL's parts once it is a well-formed http(s) URL; raises ImageUrlRefused."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise _refused(f"the image URL is longer than {MAX_URL_LENGTH} characters", "LONG")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refused("the image URL is not a valid URL", "INVALID") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _refused("the image URL must start with http:// or https://", "SCHEME")
    if parts.username is not None or parts.password is not None:
        raise _refused("the image URL must not contain a user name or password", "CREDENTIALS")
    if not parts.hostname:
        raise _refused("the image URL has no host name", "INVALID")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise _refused("the image URL's host name is not valid", "INVALID") from None
    if port == 0:
        raise _refused("the image URL's port is not valid", "INVALID")
    port = port or DEFAULT_PORTS[scheme]
    path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    return Target(scheme=scheme, host=host, port=port, path=path, host_header=host_header)


def resolve_host(host: str, port: int) -> list[str]:
    """Returns every address the system resolver gives for a host name (TCP)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


# Lookups run here so that one that hangs cannot hold the request past its deadline.
_lookups = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="image-url-dns")


def checked_addresses(
    target: Target, *, limits: FetchLimits, resolver: Resolver, deadline: float
) -> list[IPAddress]:
    """Resolves the host once and returns its addresses if every one of them may be fetched."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        lookup = _lookups.submit(resolver, target.host, target.port)
        try:
            names = lookup.result(timeout=max(0.0, deadline - time.monotonic()))
            found = list(dict.fromkeys(ipaddress.ip_address(name) for name in names))
        except concurrent.futures.TimeoutError:
            raise _timeout(limits) from None
        except (OSError, UnicodeError, ValueError):
            raise _refused(
                "the image URL's host name could not be resolved", "UNRESOLVED"
            ) from None
    if not found:
        raise _refused("the image URL's host name could not be resolved", "UNRESOLVED")
    if not all(address_is_public(address, limits.allow_networks) for address in found):
        raise _refused(
            "the image URL points to a private, local or reserved address; "
            "only images on public servers can be fetched",
            "ADDRESS",
        )
    return found


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address that was checked, with SNI and certificate checks for the host name."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        server_name: str,
        timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._tls = context

    def connect(self) -> None:
        """Connects by address, then starts TLS for the URL's host name."""
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


def _connect(
    target: Target,
    addresses: Sequence[IPAddress],
    *,
    limits: FetchLimits,
    deadline: float,
    ssl_context: ssl.SSLContext | None,
) -> http.client.HTTPConnection:
    """Returns a connection to the first checked address that answers."""
    failure: OSError | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(limits)
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(
                str(address),
                target.port,
                server_name=target.host,
                timeout=remaining,
                context=ssl_context or ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(str(address), target.port, timeout=remaining)
        try:
            connection.connect()
        except ssl.SSLError:
            connection.close()
            raise _refused(
                "the image URL's server has no valid certificate for its name", "TLS"
            ) from None
        except TimeoutError:
            connection.close()
            raise _timeout(limits) from None
        except OSError as error:
            connection.close()
            failure = error
            continue
        return connection
    raise _refused("could not connect to the image URL's server", "UNREACHABLE") from failure


def _download(
    connection: http.client.HTTPConnection, target: Target, *, limits: FetchLimits, deadline: float
) -> bytes:
    """Sends the GET and reads the body, within the deadline and the byte cap."""
    sock = connection.sock
    connection.putrequest("GET", target.path, skip_host=True, skip_accept_encoding=True)
    for name, value in (
        ("Host", target.host_header),
        ("User-Agent", USER_AGENT),
        ("Accept", "image/jpeg, image/png;q=0.9"),
        # http.client does not decompress: ask for the bytes as they are.
        ("Accept-Encoding", "identity"),
        ("Connection", "close"),
    ):
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    if 300 <= response.status < 400:
        raise _refused(
            "the image URL redirects to another address; give the address of the image itself",
            "REDIRECT",
        )
    if response.status != 200:
        raise _refused(f"the image URL answered HTTP {response.status}, not the image", "STATUS")
    declared = response.getheader("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits)
    chunks: list[bytes] = []
    total = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(limits)
        if sock is not None:
            # Each read waits at most for what is left of the one deadline.
            with contextlib.suppress(OSError):
                sock.settimeout(remaining)
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise _too_large(limits)
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_image(
    url: str,
    *,
    limits: FetchLimits,
    resolver: Resolver = resolve_host,
    ssl_context: ssl.SSLContext | None = None,
) -> bytes:
    """Returns the bytes behind an image URL, under the rules in this module's docstring.

    Raises ImageUrlRefused (what to fix, with a reason such as IMAGE_URL_ADDRESS) or
    InvalidImage (IMAGE_TOO_LARGE). The bytes are not checked to be an image here.
    """
    target = parse_image_url(url)
    deadline = time.monotonic() + limits.timeout_s
    addresses = checked_addresses(target, limits=limits, resolver=resolver, deadline=deadline)
    connection = _connect(
        target, addresses, limits=limits, deadline=deadline, ssl_context=ssl_context
    )
    try:
        return _download(connection, target, limits=limits, deadline=deadline)
    except TimeoutError:
        raise _timeout(limits) from None
    except ssl.SSLError:
        raise _refused("the image URL's server broke off the secure connection", "TLS") from None
    except (http.client.HTTPException, OSError):
        raise _refused("the image URL's server sent an unreadable answer", "BAD_RESPONSE") from None
    finally:
        connection.close()


def limits_from_settings() -> FetchLimits:
    """Returns the limits from Django settings: WEB_MAX_IMAGE_BYTES and WEB_IMAGE_URL_*."""
    from django.conf import settings

    return FetchLimits(
        max_bytes=settings.WEB_MAX_IMAGE_BYTES,
        timeout_s=float(getattr(settings, "WEB_IMAGE_URL_TIMEOUT_SECONDS", 10.0)),
        allow_networks=networks(getattr(settings, "WEB_IMAGE_URL_ALLOW_NETWORKS", ())),
    )


def _refused(message: str, reason: str) -> ImageUrlRefused:
    return ImageUrlRefused(message, reason=f"IMAGE_URL_{reason}")


def _timeout(limits: FetchLimits) -> ImageUrlRefused:
    return _refused(
        f"the image URL did not send the image within {limits.timeout_s:g} seconds", "TIMEOUT"
    )


def _too_large(limits: FetchLimits) -> InvalidImage:
    return InvalidImage(
        f"the image at the URL is larger than the limit of {limits.max_bytes / 2**20:.1f} MB",
        reason="IMAGE_TOO_LARGE",
    )
