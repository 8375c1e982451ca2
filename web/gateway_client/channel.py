"""The web tier's one channel to the gateway, its deadlines, and how one call is made."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import grpc

from servicekit.request_context import REQUEST_ID_KEY, accept_request_id, current_request_id
from web.gateway_client.errors import call_failure

T = TypeVar("T")

# The gateway's Service is headless in Kubernetes: its name resolves to every gateway pod,
# and round_robin spreads calls over all of them (pick_first would pin one). A short
# reconnect backoff makes a restarted gateway usable again within about a second, and
# bounds each connection attempt, so a call to a gateway that is down fails fast.
CHANNEL_OPTIONS: Final[tuple[tuple[str, int | str], ...]] = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # The gateway retries UNAVAILABLE itself; grpc's retry layer would also keep copies of
    # every streamed series chunk until it commits to an attempt.
    ("grpc.enable_retries", 0),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


@dataclass(frozen=True)
class GatewayConfig:
    """Where the gateway is and how long each kind of call may take, in seconds."""

    address: str
    diagnose_timeout_s: float = 30.0
    series_timeout_s: float = 300.0
    info_timeout_s: float = 5.0
    trainer_timeout_s: float = 60.0
    # A training's event stream lasts as long as the training.
    train_timeout_s: float = 3600.0


class Connection:
    """One channel to the gateway; each remote service's calls build on it (safe across threads)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._channel = grpc.insecure_channel(config.address, options=CHANNEL_OPTIONS)

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def wait_until_ready(self, *, timeout_s: float) -> bool:
        """Waits until the channel is connected to a gateway; tells whether it got there.

        Calls never wait for a connection (a gateway that is down fails them at once), so
        this is for callers that know the gateway is coming up, such as a start-up check.
        """
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            return False
        return True

    def _call(
        self, name: str, method: Callable[..., T], request: object, timeout_s: float, rid: str
    ) -> T:
        """Makes one call with its deadline and request id; raises GatewayError."""
        try:
            return method(request, timeout=timeout_s, metadata=((REQUEST_ID_KEY, rid),))
        except grpc.RpcError as exc:
            raise call_failure(exc, rid, name) from None


def request_id_for(given: str | None) -> str:
    """Returns the id this call travels with: the given one, the current one, or a new one."""
    return accept_request_id(given or current_request_id())


def elapsed_ms(started: float) -> float:
    """Returns the milliseconds since `started` (a perf_counter reading)."""
    return round((time.perf_counter() - started) * 1000, 3)
