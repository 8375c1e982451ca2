"""Training events from the gRPC stream to the project's channel-layer group, and stream helpers.

One task per stream reads the gateway's events and `group_send`s each to the project's
group, so every tab (in any web process, with Redis) that follows the project sees them.
Relays outlive the socket that started them: the training goes on, and so do its events.
They also outlive the channel layer going away (Redis restarting): an event that cannot
be sent is dropped, the relay goes on reading, and the next event reaches the group once
Redis is back. Nothing is lost for the pages: each event is the whole job state, and a
page that reconnects gets the current one on connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError

from web.gateway_client import GatewayError, TrainingEvents, TrainingJobState

logger = logging.getLogger(__name__)
T = TypeVar("T")

EVENT_TYPE: Final = "training.event"
ERROR_TYPE: Final = "training.error"
# What channels-redis raises while Redis is unreachable or restarting.
LAYER_ERRORS: Final = (RedisError, OSError)

# This process's running relays by project group; kept so tasks are not collected mid-run.
_relays: dict[str, set[asyncio.Task[None]]] = {}


def job_json(job: TrainingJobState | None) -> dict[str, Any] | None:
    """Returns a job's state as the pages read it."""
    if job is None:
        return None
    metrics = job.metrics
    return {
        "name": job.name,
        "state": job.state,
        "active": job.active,
        "error_message": job.error_message,
        "metrics": None
        if metrics is None
        else {
            "epoch": metrics.epoch,
            "total_epochs": metrics.total_epochs,
            "loss": metrics.loss,
            "accuracy": metrics.accuracy,
            "validation_accuracy": metrics.validation_accuracy,
            "elapsed_seconds": metrics.elapsed_seconds,
            "eta_seconds": metrics.eta_seconds,
        },
    }


def error_json(error: GatewayError) -> dict[str, Any]:
    """Returns a failed call as the pages read it: a code and what to tell the person."""
    return {"code": error.code, "message": error.message, "http_status": error.http_status}


async def iterate_in_thread(items: Iterable[T]) -> AsyncIterator[T]:
    """Yields what a blocking iterable yields, read in a thread of its own.

    A thread per stream, not the loop's executor: a training's stream lasts minutes and
    the executor's few workers would soon all be held by streams.
    """
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, value: Any) -> None:
        # A closed loop means nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(arrived.put_nowait, (kind, value))

    def pump() -> None:
        try:
            for item in items:
                put("item", item)
        except BaseException as exc:  # handed to the reader, which raises it
            put("error", exc)
        else:
            put("end", None)

    threading.Thread(target=pump, name="teach-stream", daemon=True).start()
    while True:
        kind, value = await arrived.get()
        if kind == "item":
            yield value
        elif kind == "error":
            raise value
        else:
            return


async def relay(
    *,
    group: str,
    events: TrainingEvents,
    reply_channel: str | None,
    on_event: Callable[[TrainingJobState], Awaitable[None]] | None = None,
) -> None:
    """Sends each event of a training stream to the group; a failure goes to `reply_channel`.

    Cancelling the task ends the gRPC call (not the job).
    """
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("CHANNEL_LAYERS has no default layer")
    outlet = _Outlet(layer, group)
    try:
        async for job in iterate_in_thread(events):
            if on_event is not None:
                await on_event(job)
            await outlet.send({"type": EVENT_TYPE, "job": job_json(job)})
    except GatewayError as error:
        await outlet.send({"type": ERROR_TYPE, "error": error_json(error)}, channel=reply_channel)
    finally:
        events.cancel()


class _Outlet:
    """Sends a relay's messages, dropping those the channel layer cannot take just now.

    Says once in the log when sending starts failing and once when it works again, not
    for every event of an outage.
    """

    def __init__(self, layer: BaseChannelLayer, group: str) -> None:
        self.layer = layer
        self.group = group
        self.dropped = 0

    async def send(self, message: dict[str, Any], *, channel: str | None = None) -> None:
        try:
            if channel is not None:
                await self.layer.send(channel, message)
            else:
                await self.layer.group_send(self.group, message)
        except LAYER_ERRORS as error:
            if not self.dropped:
                logger.warning(
                    "training relay %s: the channel layer is unreachable (%s); "
                    "dropping events until it is back",
                    self.group,
                    error,
                )
            self.dropped += 1
            return
        if self.dropped:
            logger.warning(
                "training relay %s: the channel layer is back after %d dropped event(s)",
                self.group,
                self.dropped,
            )
            self.dropped = 0


def start_relay(
    *,
    group: str,
    events: TrainingEvents,
    reply_channel: str | None,
    on_event: Callable[[TrainingJobState], Awaitable[None]] | None = None,
) -> asyncio.Task[None]:
    """Starts a relay task that this process keeps until its stream ends."""
    task = asyncio.create_task(
        relay(group=group, events=events, reply_channel=reply_channel, on_event=on_event),
        name=f"teach-relay-{group}",
    )
    running = _relays.setdefault(group, set())
    running.add(task)

    def forget(done: asyncio.Task[None]) -> None:
        running.discard(done)
        if not running:
            _relays.pop(group, None)
        if not done.cancelled() and (exc := done.exception()) is not None:
            logger.error("training relay failed", exc_info=exc)

    task.add_done_callback(forget)
    return task


def relaying(group: str) -> bool:
    """Tells whether this process already relays a stream of the group's project."""
    return bool(_relays.get(group))


async def stop_relays() -> None:
    """Cancels this process's relays and waits for them (tests, shutdown)."""
    tasks = [task for running in list(_relays.values()) for task in running]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
