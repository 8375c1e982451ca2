"""Dynamic batcher: merges concurrent single-input calls into batched model calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from servicekit import metrics
from servicekit.errors import BackendTimeout, ModelNotReady, QueueFull
from servicekit.settings import BatcherSettings

logger = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Pending:
    item: np.ndarray
    future: asyncio.Future[np.ndarray]
    deadline: float | None  # time.monotonic() after which nobody waits for the answer
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Queues inputs and runs the model on batches of them, one batch at a time.

    Whatever arrived while the model was busy forms the next batch (up to
    `max_batch_size`), so batches grow with load and an idle service adds no delay;
    `max_wait_ms` optionally holds a batch open for latecomers. The queue is bounded:
    beyond `max_queue_size` waiting inputs, `submit` raises QueueFull at once. Inputs
    whose deadline passed while they waited are dropped before they reach the model.
    """

    def __init__(
        self,
        predict: PredictFn,
        settings: BatcherSettings,
        *,
        name: str,
        executor: Executor | None = None,
    ) -> None:
        self._predict = predict
        self._settings = settings
        self._name = name
        self._executor = executor
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._queue_depth = metrics.QUEUE_DEPTH.labels(name)
        self._batch_size = metrics.BATCH_SIZE.labels(name)

    async def start(self) -> None:
        """Starts the worker that feeds the model."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"batcher-{self._name}")

    async def stop(self) -> None:
        """Stops the worker; inputs still queued fail with ModelNotReady."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(ModelNotReady("the service is shutting down"))
        self._queue_depth.set(0)

    async def submit(self, item: np.ndarray, *, timeout: float | None = None) -> np.ndarray:
        """Returns the model's output row for one input.

        Args:
            item: one preprocessed input, without the batch axis.
            timeout: seconds the caller will wait (its remaining deadline), or None.

        Raises:
            QueueFull: too many inputs are already waiting.
            BackendTimeout: the deadline passed before the model reached the input.
            ModelNotReady: the batcher is not running.
        """
        if self._worker is None:
            raise ModelNotReady("the model is not running yet; retry shortly")
        if self._queue.qsize() >= self._settings.max_queue_size:
            metrics.BATCHER_REJECTED.labels(self._name, "queue_full").inc()
            raise QueueFull(
                f"the model queue is full ({self._settings.max_queue_size} waiting); retry later"
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._queue.put_nowait(_Pending(item, future, deadline))
        self._queue_depth.set(self._queue.qsize())
        return await future  # cancelling the caller cancels the future; the worker skips it

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self._queue_depth.set(self._queue.qsize())
            live = self._drop_expired(batch)
            if not live:
                continue
            self._batch_size.observe(len(live))
            stacked = np.stack([pending.item for pending in live])
            try:
                outputs = await loop.run_in_executor(self._executor, self._predict, stacked)
            except Exception as exc:  # every waiting caller learns why, the worker goes on
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            for pending, row in zip(live, outputs, strict=True):
                if not pending.future.done():
                    pending.future.set_result(row)

    async def _collect(self) -> list[_Pending]:
        """Waits for one input, then takes what else is queued, up to the batch limits."""
        batch = [await self._queue.get()]
        limit = self._settings.max_batch_size
        close_at = time.monotonic() + self._settings.max_wait_ms / 1000
        while len(batch) < limit:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = close_at - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    def _drop_expired(self, batch: list[_Pending]) -> list[_Pending]:
        now = time.monotonic()
        live = []
        for pending in batch:
            if pending.future.done():  # the caller went away
                continue
            if pending.deadline is not None and pending.deadline <= now:
                metrics.BATCHER_REJECTED.labels(self._name, "deadline_passed").inc()
                pending.future.set_exception(
                    BackendTimeout("the deadline passed while the request waited for the model")
                )
                continue
            live.append(pending)
        return live
