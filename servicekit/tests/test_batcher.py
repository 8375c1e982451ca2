"""The dynamic batcher merges calls, bounds its queue and drops expired inputs."""

import asyncio
import threading
import time

import numpy as np
import pytest

from servicekit.batcher import DynamicBatcher
from servicekit.errors import BackendTimeout, ModelNotReady, QueueFull
from servicekit.settings import BatcherSettings


class RecordingModel:
    """Doubles each input and records the batch sizes it was called with."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batch_sizes: list[int] = []
        self.delay = delay
        self.release = threading.Event()
        self.release.set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.release.wait(5)
        time.sleep(self.delay)
        self.batch_sizes.append(len(batch))
        return batch * 2


async def started(model: RecordingModel, **limits: float) -> DynamicBatcher:
    settings = BatcherSettings(
        max_batch_size=int(limits.get("max_batch_size", 8)),
        max_wait_ms=limits.get("max_wait_ms", 0.0),
        max_queue_size=int(limits.get("max_queue_size", 64)),
    )
    batcher = DynamicBatcher(model, settings, name="test")
    await batcher.start()
    return batcher


async def test_concurrent_calls_are_merged_into_batches() -> None:
    model = RecordingModel()
    batcher = await started(model, max_batch_size=8, max_wait_ms=50)
    results = await asyncio.gather(*(batcher.submit(np.full(2, i, np.float32)) for i in range(16)))
    await batcher.stop()
    assert [r.tolist() for r in results] == [[2 * i, 2 * i] for i in range(16)]
    assert model.batch_sizes == [8, 8]


async def test_calls_that_queue_while_the_model_is_busy_form_the_next_batch() -> None:
    model = RecordingModel()
    model.release.clear()
    batcher = await started(model, max_batch_size=16, max_wait_ms=0)
    first = asyncio.ensure_future(batcher.submit(np.zeros(1, np.float32)))
    await asyncio.sleep(0.05)  # the model now holds the first input
    rest = [asyncio.ensure_future(batcher.submit(np.ones(1, np.float32))) for _ in range(5)]
    await asyncio.sleep(0.05)
    model.release.set()
    await asyncio.gather(first, *rest)
    await batcher.stop()
    assert model.batch_sizes == [1, 5]


async def test_a_full_queue_refuses_at_once() -> None:
    model = RecordingModel()
    model.release.clear()
    batcher = await started(model, max_batch_size=1, max_queue_size=2)
    in_model = asyncio.ensure_future(batcher.submit(np.zeros(1, np.float32)))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(batcher.submit(np.zeros(1, np.float32))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull, match="queue is full"):
        await batcher.submit(np.zeros(1, np.float32))
    model.release.set()
    await asyncio.gather(in_model, *queued)
    await batcher.stop()


async def test_inputs_whose_deadline_passed_never_reach_the_model() -> None:
    model = RecordingModel(delay=0.2)
    batcher = await started(model, max_batch_size=1)
    slow = asyncio.ensure_future(batcher.submit(np.zeros(1, np.float32)))
    await asyncio.sleep(0.02)
    with pytest.raises(BackendTimeout):
        await batcher.submit(np.ones(1, np.float32), timeout=0.05)
    await slow
    await batcher.stop()
    assert model.batch_sizes == [1]


async def test_a_model_error_reaches_every_caller_of_the_batch_and_the_worker_goes_on() -> None:
    calls = 0

    def flaky(batch: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return batch

    batcher = DynamicBatcher(flaky, BatcherSettings(4, 20.0, 16), name="flaky")
    await batcher.start()
    outcomes = await asyncio.gather(
        *(batcher.submit(np.zeros(1, np.float32)) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert (await batcher.submit(np.ones(1, np.float32))).tolist() == [1.0]
    await batcher.stop()


async def test_it_refuses_work_before_start() -> None:
    batcher = DynamicBatcher(RecordingModel(), BatcherSettings(1, 0.0, 1), name="idle")
    with pytest.raises(ModelNotReady):
        await batcher.submit(np.zeros(1, np.float32))
