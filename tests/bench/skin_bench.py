"""Skin serving benchmark: the model's raw limit, skin_service via the gateway, a naive server.

Run with `make bench`. Prints, side by side from one run:
  (a) raw batched throughput of the SavedModel in this process, decode excluded:
      the physical limit of the model on this machine;
  (b) skin_service (dynamic batcher) through the gateway, 600x450 JPEGs, decode
      included, at concurrency 1 and 32;
  (c) a naive one-image-per-call server of the same model (tests/bench/naive_skin_server.py)
      at the same concurrency, called directly;
with their ratios against the targets (b) >= 0.7 x (a) and (b) >= 2 x (c), p50/p99
latencies and skin_service's peak resident memory.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from skin_service import domain
from skin_service.data import generate_image
from skin_service.model_card import load_model_card
from skin_service.settings import DEFAULT_MODEL_DIR
from tests.bench.gateway_bench import WORKLOADS, Result, run_round, start_stack
from tests.support.processes import Process, start

TARGET_VS_RAW = 0.7
TARGET_VS_NAIVE = 2.0
RAW_BATCH = 32


def phone_jpegs(count: int = 16) -> list[bytes]:
    """Returns generated lesions as 600x450 JPEGs, the size of a phone-camera crop."""
    rng = np.random.default_rng(2026)
    images = []
    for index in range(count):
        lesion = generate_image(domain.LABELS[index % 3], rng, size=600)
        canvas = lesion.crop((0, 75, 600, 525))
        buffer = io.BytesIO()
        canvas.save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def raw_throughput(seconds: float = 8.0) -> float:
    """Returns images per second of the SavedModel on preprocessed batches of RAW_BATCH."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    card = load_model_card(DEFAULT_MODEL_DIR)
    model = tf.saved_model.load(str(DEFAULT_MODEL_DIR / str(card.version)))
    predict = model.signatures[card.signature_name]
    size = card.input_size
    batch = tf.constant(np.random.default_rng(0).random((RAW_BATCH, size, size, 3), np.float32))
    for _ in range(3):
        predict(**{card.input_key: batch})
    images, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        predict(**{card.input_key: batch})[card.output_key].numpy()
        images += RAW_BATCH
    return images / (time.perf_counter() - began)


async def measure(address: str, images: list[bytes], concurrency: int, calls: int) -> Result:
    """Returns one round of Diagnose calls cycling through the images."""
    per_image = max(1, calls // len(images))
    rounds = [await run_round(address, "skin", image, concurrency, per_image) for image in images]
    return Result(
        [latency for result in rounds for latency in result.latencies_s],
        sum(result.seconds for result in rounds),
    )


def peak_rss_mib(process: Process) -> float:
    """Returns the process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_for_naive(process: Process, image: bytes, timeout: float = 120.0) -> None:
    """Waits until the naive server answers a Diagnose call."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await run_round(process.address, "skin", image, 1, 1)
            return
        except Exception:
            if time.monotonic() > deadline or process.popen.poll() is not None:
                raise RuntimeError(f"naive server did not start:\n{process.log()}") from None
            await asyncio.sleep(0.5)


def row(name: str, concurrency: int, result: Result) -> str:
    """Returns one table row."""
    return (
        f"{name:<34} {concurrency:>5} {result.throughput:>10.0f} "
        f"{result.percentile_ms(50):>9.2f} {result.percentile_ms(99):>9.2f}"
    )


async def main_async(calls: int) -> int:
    """Runs the three measurements and prints them; returns 0 when both targets are met."""
    images = phone_jpegs()
    raw = raw_throughput()
    results: dict[str, dict[int, Result]] = {}
    with tempfile.TemporaryDirectory() as state_dir:
        skin, gateway = start_stack(Path(state_dir), WORKLOADS["skin"])
        try:
            results["(b) skin_service via gateway"] = {
                1: await measure(gateway.address, images, 1, calls // 8),
                32: await measure(gateway.address, images, 32, calls),
            }
            skin_rss = peak_rss_mib(skin)
        finally:
            gateway.terminate()
            skin.terminate()
    naive = start("naive", "tests.bench.naive_skin_server", "NAIVE_")
    try:
        await wait_for_naive(naive, images[0])
        results["(c) naive one-image-per-call"] = {
            1: await measure(naive.address, images, 1, calls // 8),
            32: await measure(naive.address, images, 32, calls),
        }
        naive_rss = peak_rss_mib(naive)
    finally:
        naive.kill()
    batched = results["(b) skin_service via gateway"][32].throughput
    unbatched = results["(c) naive one-image-per-call"][32].throughput
    print(f"skin model, {len(images)} distinct 600x450 JPEGs (~{len(images[0]) // 1024} KiB)")
    print(f"{'':<34} {'conc':>5} {'images/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    print(
        f"{'(a) raw SavedModel, batch ' + str(RAW_BATCH) + ', no decode':<34} {'-':>5} {raw:>10.0f}"
    )
    for name, by_concurrency in results.items():
        for concurrency, result in by_concurrency.items():
            print(row(name, concurrency, result))
    vs_raw, vs_naive = batched / raw, batched / unbatched
    ok_raw, ok_naive = vs_raw >= TARGET_VS_RAW, vs_naive >= TARGET_VS_NAIVE
    print(
        f"(b)/(a) at 32: {vs_raw:.2f} (target >= {TARGET_VS_RAW}: {'met' if ok_raw else 'MISSED'})"
    )
    print(
        f"(b)/(c) at 32: {vs_naive:.2f} (target >= {TARGET_VS_NAIVE}: "
        f"{'met' if ok_naive else 'MISSED'})"
    )
    print(f"peak RSS: skin_service {skin_rss:.0f} MiB, naive server {naive_rss:.0f} MiB")
    return 0 if ok_raw and ok_naive else 1


def main() -> None:
    """Runs the benchmark."""
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 3200
    sys.exit(asyncio.run(main_async(calls)))


if __name__ == "__main__":
    main()
