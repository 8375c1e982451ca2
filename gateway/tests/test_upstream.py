"""Deadlines, the retry policy and round-robin, without any network."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from gateway.upstream import (
    _CHANNEL_OPTIONS,
    RetryPolicy,
    RoundRobin,
    call_with_retries,
    upstream_timeout,
)


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "scripted")


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """An attempt function that fails with the given errors, then answers "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.attempts: list[int] = []

    async def __call__(self, number: int) -> str:
        self.attempts.append(number)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_the_upstream_gets_the_callers_remaining_time() -> None:
    assert upstream_timeout(4.2, default_s=30, max_s=300) == 4.2


def test_the_upstream_gets_the_default_when_the_caller_set_no_deadline() -> None:
    assert upstream_timeout(None, default_s=30, max_s=300) == 30


def test_the_upstream_deadline_is_capped_at_the_maximum() -> None:
    assert upstream_timeout(3600, default_s=30, max_s=300) == 300
    assert upstream_timeout(None, default_s=30, max_s=10) == 10


def test_an_expired_caller_gives_the_upstream_no_time() -> None:
    assert upstream_timeout(-0.5, default_s=30, max_s=300) == 0.0


def test_backoff_grows_exponentially_up_to_the_maximum() -> None:
    policy = RetryPolicy(attempts=5, initial_backoff_s=0.1, max_backoff_s=0.3)
    assert [policy.backoff(n, rand=lambda: 1.0) for n in range(4)] == [0.1, 0.2, 0.3, 0.3]


def test_backoff_jitter_stays_between_half_and_the_whole_pause() -> None:
    policy = RetryPolicy(initial_backoff_s=0.1)
    assert policy.backoff(0, rand=lambda: 0.0) == pytest.approx(0.05)
    assert policy.backoff(0, rand=lambda: 0.999) < 0.1


async def test_it_retries_unavailable_until_an_attempt_succeeds() -> None:
    clock = FakeClock()
    script = Script(rpc_error(grpc.StatusCode.UNAVAILABLE), rpc_error(grpc.StatusCode.UNAVAILABLE))
    result = await call_with_retries(
        script,
        policy=RetryPolicy(attempts=3),
        deadline=clock() + 10,
        clock=clock,
        sleep=clock.sleep,
    )
    assert result == "ok"
    assert script.attempts == [0, 1, 2]
    assert len(clock.sleeps) == 2 and clock.sleeps[1] > clock.sleeps[0] * 0.9


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.NOT_FOUND,
    ],
)
async def test_it_does_not_retry_anything_but_unavailable(code: grpc.StatusCode) -> None:
    clock = FakeClock()
    script = Script(rpc_error(code))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_with_retries(
            script, policy=RetryPolicy(), deadline=clock() + 10, clock=clock, sleep=clock.sleep
        )
    assert caught.value.code() == code
    assert script.attempts == [0]


async def test_it_stops_after_the_last_attempt_with_the_last_error() -> None:
    clock = FakeClock()
    script = Script(*(rpc_error(grpc.StatusCode.UNAVAILABLE) for _ in range(5)))
    with pytest.raises(grpc.aio.AioRpcError):
        await call_with_retries(
            script,
            policy=RetryPolicy(attempts=3),
            deadline=clock() + 10,
            clock=clock,
            sleep=clock.sleep,
        )
    assert script.attempts == [0, 1, 2]


async def test_it_does_not_retry_when_the_pause_would_pass_the_deadline() -> None:
    clock = FakeClock()
    script = Script(*(rpc_error(grpc.StatusCode.UNAVAILABLE) for _ in range(5)))
    policy = RetryPolicy(attempts=10, initial_backoff_s=0.1, max_backoff_s=0.1)
    with pytest.raises(grpc.aio.AioRpcError):
        await call_with_retries(
            script, policy=policy, deadline=clock() + 0.25, clock=clock, sleep=clock.sleep
        )
    assert clock.now <= 100.25
    assert 1 < len(script.attempts) < 10


async def test_it_does_not_retry_a_plain_exception() -> None:
    clock = FakeClock()
    script = Script(ValueError("boom"))
    with pytest.raises(ValueError):
        await call_with_retries(
            script, policy=RetryPolicy(), deadline=clock() + 10, clock=clock, sleep=clock.sleep
        )
    assert script.attempts == [0]


def test_round_robin_takes_the_replicas_in_turn() -> None:
    balancer = RoundRobin()
    picks = [balancer.pick("skin", ["a:1", "b:1", "c:1"], lambda _: True) for _ in range(6)]
    assert picks == ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]


def test_round_robin_keeps_a_separate_turn_per_disease() -> None:
    balancer = RoundRobin()
    assert balancer.pick("skin", ["a:1", "b:1"], lambda _: True) == "a:1"
    assert balancer.pick("mri", ["c:1", "d:1"], lambda _: True) == "c:1"
    assert balancer.pick("skin", ["a:1", "b:1"], lambda _: True) == "b:1"


def test_round_robin_passes_over_unusable_replicas() -> None:
    balancer = RoundRobin()
    picks = [balancer.pick("skin", ["a:1", "b:1", "c:1"], lambda a: a != "b:1") for _ in range(4)]
    assert "b:1" not in picks


def test_round_robin_falls_back_to_the_next_in_turn_when_none_is_usable() -> None:
    balancer = RoundRobin()
    picks = [balancer.pick("skin", ["a:1", "b:1"], lambda _: False) for _ in range(2)]
    assert picks == ["a:1", "b:1"]


async def test_a_name_with_several_addresses_spreads_calls_over_all_of_them() -> None:
    """A headless Service resolves to every pod; the gateway's channels must use them all."""
    servers, counts = [], [0, 0]
    ports = []
    for index in range(2):

        def handler(request: bytes, context: object, index: int = index) -> bytes:
            counts[index] += 1
            return request

        server = grpc.aio.server()
        generic = grpc.method_handlers_generic_handler(
            "t.Echo", {"Call": grpc.unary_unary_rpc_method_handler(handler)}
        )
        server.add_generic_rpc_handlers((generic,))
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    target = f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    try:
        async with grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS) as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/t.Echo/Call"
            )
            for _ in range(10):
                await call(b"x", timeout=5)
    finally:
        for server in servers:
            await server.stop(0)
    assert counts[0] > 0 and counts[1] > 0, counts
