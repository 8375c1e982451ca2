"""Calls to upstream services: pooled channels, round-robin, deadlines and retries."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio

from servicekit.settings import SettingsError

if TYPE_CHECKING:
    from gateway.registry import Route
    from gateway.settings import UpstreamTls

T = TypeVar("T")
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
_LOST_STATUS_DETAILS = "Internal error from Core"
Metadata = Sequence[tuple[str, str]]

# Short reconnect backoff so a restarted service is used again within about a second; the
# min value is also grpc's connect timeout, which keeps a black-holed address from hanging.
_CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # The gateway retries by itself; grpc's own retry layer would also hold copies of
    # streamed chunks in memory until it commits to an attempt.
    ("grpc.enable_retries", 0),
    # A headless Service's name resolves to every pod: spread calls over all of them
    # (the default, pick_first, would send every call to one pod).
    ("grpc.lb_policy_name", "round_robin"),
    # Each channel keeps its own connections. grpc shares them process-wide by default,
    # so a new channel to an address could inherit a connection to a server that had
    # just stopped there and fail on its GOAWAY (seen once in CI).
    ("grpc.use_local_subchannel_pool", 1),
)


class FirstStatus:
    """Keeps the status a client-streaming call ended with first, for when grpc loses it.

    grpc aio replaces such a call's status with INTERNAL "Internal error from Core" when a
    write fails because the server had already ended the call (grpc/grpc#36066), losing
    the server's code, details and trailers. Added as the call's done callback, this keeps
    them; `server_error` puts them back.
    """

    def __init__(self) -> None:
        self._error: grpc.aio.AioRpcError | None = None

    def __call__(self, call: object) -> None:
        """Records the call's status the first time it is set."""
        if self._error is not None:
            return
        # grpc offers no synchronous accessor for a finished call's status.
        status: Any = getattr(getattr(call, "_cython_call", None), "_status", None)
        code = _STATUS_CODES.get(status.code()) if status is not None else None
        if code is None or code is grpc.StatusCode.OK:
            return
        self._error = grpc.aio.AioRpcError(
            code,
            grpc.aio.Metadata(),
            grpc.aio.Metadata.from_tuple(status.trailing_metadata() or ()),
            status.details(),
            status.debug_error_string(),
        )

    def server_error(self, error: grpc.aio.AioRpcError) -> grpc.aio.AioRpcError:
        """Returns the server's error when grpc replaced it with its INTERNAL placeholder."""
        placeholder = (
            error.code() is grpc.StatusCode.INTERNAL and error.details() == _LOST_STATUS_DETAILS
        )
        return self._error if placeholder and self._error is not None else error


def upstream_timeout(time_remaining: float | None, *, default_s: float, max_s: float) -> float:
    """Returns the upstream timeout: the caller's remaining time, or default_s, capped at max_s."""
    if time_remaining is None:
        return min(default_s, max_s)
    return max(0.0, min(time_remaining, max_s))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently an idempotent call is tried again after UNAVAILABLE."""

    attempts: int = 3
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    multiplier: float = 2.0

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Returns the pause before retry number `retry` (0 for the first retry)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**retry)
        # Jitter keeps callers that failed together from retrying in lockstep.
        return ceiling * (0.5 + 0.5 * rand())


def is_unavailable(error: BaseException) -> bool:
    """Returns True for an UNAVAILABLE status, the one failure that is safe to retry."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


async def call_with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    deadline: float,
    retryable: Callable[[BaseException], bool] = is_unavailable,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Returns attempt(n)'s result, retrying retryable errors while attempts and time remain.

    `deadline` is on `clock`'s scale; a retry that could not start before it is not
    made, and the last error is raised instead.
    """
    number = 0
    while True:
        try:
            return await attempt(number)
        except Exception as error:
            if number + 1 >= policy.attempts or not retryable(error):
                raise
            pause = policy.backoff(number, rand)
            if clock() + pause >= deadline:
                raise
        await sleep(pause)
        number += 1


class RoundRobin:
    """Spreads calls over a route's replicas in turn, passing over unusable ones."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def pick(self, key: str, addresses: Sequence[str], usable: Callable[[str], bool]) -> str:
        """Returns the next usable address for key; the next in turn when none is usable."""
        if len(addresses) == 1:
            return addresses[0]
        start = self._next.get(key, 0)
        self._next[key] = start + 1
        for offset in range(len(addresses)):
            address = addresses[(start + offset) % len(addresses)]
            if usable(address):
                return address
        return addresses[start % len(addresses)]


class ChannelPool:
    """One long-lived channel per upstream address, made on first use and reused."""

    def __init__(self, *, max_message_bytes: int, tls: UpstreamTls | None) -> None:
        self._options: list[tuple[str, int | str]] = [
            *_CHANNEL_OPTIONS,
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if tls is not None and tls.server_name is not None:
            self._options.append(("grpc.ssl_target_name_override", tls.server_name))
        self._credentials = _channel_credentials(tls) if tls is not None else None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._unary: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        self._stream: dict[tuple[str, str], grpc.aio.StreamUnaryMultiCallable[bytes, bytes]] = {}
        self._server_stream: dict[
            tuple[str, str], grpc.aio.UnaryStreamMultiCallable[bytes, bytes]
        ] = {}
        self._bidi: dict[tuple[str, str], grpc.aio.StreamStreamMultiCallable[bytes, bytes]] = {}
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    def unary(self, address: str, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """Returns a callable that sends request bytes and returns the response bytes as-is."""
        callable_ = self._unary.get((address, method))
        if callable_ is None:
            # No serializers: bytes pass through without a decode and re-encode.
            callable_ = self._channel(address).unary_unary(method, _registered_method=True)  # type: ignore[call-arg]
            self._unary[(address, method)] = callable_
        return callable_

    def stream_unary(
        self, address: str, method: str
    ) -> grpc.aio.StreamUnaryMultiCallable[bytes, bytes]:
        """Returns a client-streaming callable that passes request and response bytes as-is."""
        callable_ = self._stream.get((address, method))
        if callable_ is None:
            callable_ = self._channel(address).stream_unary(method, _registered_method=True)  # type: ignore[call-arg]
            self._stream[(address, method)] = callable_
        return callable_

    def unary_stream(
        self, address: str, method: str
    ) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
        """Returns a server-streaming callable that passes request and response bytes as-is."""
        callable_ = self._server_stream.get((address, method))
        if callable_ is None:
            callable_ = self._channel(address).unary_stream(method, _registered_method=True)  # type: ignore[call-arg]
            self._server_stream[(address, method)] = callable_
        return callable_

    def stream_stream(
        self, address: str, method: str
    ) -> grpc.aio.StreamStreamMultiCallable[bytes, bytes]:
        """Returns a bidirectional-streaming callable that passes the bytes as-is."""
        callable_ = self._bidi.get((address, method))
        if callable_ is None:
            callable_ = self._channel(address).stream_stream(method, _registered_method=True)  # type: ignore[call-arg]
            self._bidi[(address, method)] = callable_
        return callable_

    def usable(self, address: str) -> bool:
        """Returns False while the address's last connection attempt failed."""
        channel = self._channels.get(address)
        if channel is None:
            return True
        return channel.get_state() != grpc.ChannelConnectivity.TRANSIENT_FAILURE

    def retain(self, addresses: Collection[str], *, grace_s: float) -> None:
        """Closes the channels no route uses any more, giving their calls grace_s to finish."""
        for address in [a for a in self._channels if a not in addresses]:
            channel = self._channels.pop(address)
            self._unary = {k: v for k, v in self._unary.items() if k[0] != address}
            self._stream = {k: v for k, v in self._stream.items() if k[0] != address}
            self._server_stream = {k: v for k, v in self._server_stream.items() if k[0] != address}
            self._bidi = {k: v for k, v in self._bidi.items() if k[0] != address}
            task = asyncio.get_running_loop().create_task(channel.close(grace=grace_s))
            self._retiring[task] = channel
            task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def close(self) -> None:
        """Closes every channel, cancelling calls still in flight."""
        channels = [*self._channels.values(), *self._retiring.values()]
        for task in list(self._retiring):
            task.cancel()
        self._channels, self._retiring = {}, {}
        self._unary.clear()
        self._stream.clear()
        self._server_stream.clear()
        self._bidi.clear()
        await asyncio.gather(*(channel.close() for channel in channels))

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            else:
                channel = grpc.aio.secure_channel(address, self._credentials, options=self._options)
            self._channels[address] = channel
        return channel


def _channel_credentials(tls: UpstreamTls) -> grpc.ChannelCredentials:
    def read(path: object, variable: str) -> bytes | None:
        if path is None:
            return None
        try:
            with open(str(path), "rb") as file:
                return file.read()
        except OSError as exc:
            raise SettingsError(f"{variable}: cannot read {str(path)!r} ({exc.strerror})") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca_file, "GATEWAY_UPSTREAM_TLS_CA_FILE"),
        private_key=read(tls.key_file, "GATEWAY_UPSTREAM_TLS_KEY_FILE"),
        certificate_chain=read(tls.cert_file, "GATEWAY_UPSTREAM_TLS_CERT_FILE"),
    )


class Upstream:
    """Sends calls for a route to one of its replicas, within a deadline."""

    def __init__(
        self,
        pool: ChannelPool,
        policy: RetryPolicy,
        metadata: Callable[[], Metadata],
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._metadata = metadata
        self._balancer = RoundRobin()

    async def unary(
        self, route: Route, method: str, request: bytes, *, timeout: float, retry: bool = True
    ) -> bytes:
        """Returns the upstream's response bytes; UNAVAILABLE moves on to the next replica.

        `retry=False` is for calls that change something: an UNAVAILABLE from a server
        may come after the change was made, so such a call is made once.

        Raises:
            grpc.aio.AioRpcError: the upstream's status, after the last attempt.
        """
        deadline = time.monotonic() + timeout
        metadata = self._metadata()
        tried: set[str] = set()

        async def attempt(_: int) -> bytes:
            address = self._pick(route, tried)
            return await self._pool.unary(address, method)(
                request, timeout=max(0.0, deadline - time.monotonic()), metadata=metadata
            )

        return await call_with_retries(attempt, policy=self._policy_for(retry), deadline=deadline)

    async def stream(
        self,
        route: Route,
        method: str,
        first: bytes | None,
        rest: AsyncIterator[bytes],
        *,
        timeout: float,
        retry: bool = True,
    ) -> bytes:
        """Forwards a client stream message by message and returns the response bytes.

        Only opening the call is retried (not at all with `retry=False`): once a
        message went out, the upstream has part of the upload, and the caller's stream
        cannot be replayed. `first`, when given, is sent before `rest`.

        Raises:
            grpc.aio.AioRpcError: the upstream's status.
        """
        deadline = time.monotonic() + timeout
        metadata = self._metadata()
        tried: set[str] = set()

        async def open_call(_: int) -> grpc.aio.StreamUnaryCall[bytes, bytes]:
            address = self._pick(route, tried)
            call = self._pool.stream_unary(address, method)(
                timeout=max(0.0, deadline - time.monotonic()), metadata=metadata
            )
            try:
                await call.wait_for_connection()
            except BaseException:
                call.cancel()
                raise
            return call

        call = await call_with_retries(open_call, policy=self._policy_for(retry), deadline=deadline)
        status = FirstStatus()
        call.add_done_callback(status)
        try:
            try:
                if first is not None:
                    await call.write(first)
                async for message in rest:
                    await call.write(message)
                await call.done_writing()
            except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                pass  # The upstream ended the call early; awaiting it gives its answer or status.
            try:
                return await call
            except grpc.aio.AioRpcError as error:
                raise status.server_error(error) from None
        finally:
            if not call.done():
                call.cancel()

    def server_stream(
        self, route: Route, method: str, request: bytes, *, timeout: float | None
    ) -> grpc.aio.UnaryStreamCall[bytes, bytes]:
        """Opens a server-streaming call on one replica; the caller reads and cancels it.

        Never retried: the call may have started work upstream before it failed.
        """
        address = self._pick(route, set())
        return self._pool.unary_stream(address, method)(
            request, timeout=timeout, metadata=self._metadata()
        )

    def bidi(
        self, route: Route, method: str, requests: AsyncIterator[bytes], *, timeout: float | None
    ) -> grpc.aio.StreamStreamCall[bytes, bytes]:
        """Opens a bidirectional call on one replica, sending each of requests as it comes.

        grpc writes the next request only once the previous one is sent, so nothing
        queues in the gateway. If `requests` raises, grpc cancels the call.
        """
        address = self._pick(route, set())
        return self._pool.stream_stream(address, method)(
            requests, timeout=timeout, metadata=self._metadata()
        )

    def _policy_for(self, retry: bool) -> RetryPolicy:
        return self._policy if retry else RetryPolicy(attempts=1)

    def _pick(self, route: Route, tried: set[str]) -> str:
        address = self._balancer.pick(
            route.disease,
            route.addresses,
            lambda a: a not in tried and self._pool.usable(a),
        )
        tried.add(address)
        return address
