"""Skin serving benchmark: the pipeline's limits, skin_service via the gateway, a naive server.

Run with `make bench`. Prints, side by side from one run:
  (a) the model-only limit: the service's embedded backend (the shipped SavedModel) in
      this process on preprocessed batches of 32, decode excluded;
  (a') the decode-included limit: the same 600x450 JPEGs the callers send, decoded and
      preprocessed by the service's own functions on a pool of one thread per core,
      feeding batches of 32 to the same backend, in this process (tests/bench/skin_limit.py):
      the best one process does with skin_service's work, gRPC aside;
  (b) skin_service (dynamic batcher) through the gateway, decode included, at
      concurrency 1 and 32;
  (c) a naive one-image-per-call server of the same model (tests/bench/naive_skin_server.py)
      at the same concurrency, called directly;
with the ratios (b)/(a') at 32 (target >= 0.7) and (b)/(c) at 32 (target >= 2) through
tests/bench/report.py (printed, and recorded in var/bench/results.json), p50/p99
latencies and both servers' peak resident memory. Targets are reported, not asserted.
BENCH_QUICK=1 measures for less time and makes fewer calls.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc

from skin_service import domain
from skin_service.data import generate_image
from tests.bench import report, skin_limit
from tests.bench.gateway_bench import WORKLOADS, Result, run_round, start_stack
from tests.support.processes import Process, start

TARGET_VS_LIMIT = 0.7
TARGET_VS_NAIVE = 2.0
# calls at concurrency 32 (an eighth of them at 1) and seconds per in-process limit
FULL_CALLS, FULL_LIMIT_S = 3200, 8.0
QUICK_CALLS, QUICK_LIMIT_S = 640, 3.0


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


async def measure(address: str, images: list[bytes], concurrency: int, calls: int) -> Result:
    """Returns `calls` Diagnose calls from `concurrency` workers, each cycling through the images.

    One round on one channel, so concurrency stays at `concurrency` until the last calls.
    """
    requests = [pb.DiagnoseRequest(disease="skin", image=image) for image in images]
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DiagnosisServiceStub(channel)
        for request in requests[:4]:
            await stub.Diagnose(request, timeout=30)
        remaining = calls

        async def worker(number: int) -> None:
            nonlocal remaining
            sent = 0
            while remaining > 0:
                remaining -= 1
                request = requests[(number + sent) % len(requests)]
                sent += 1
                began = time.perf_counter()
                await stub.Diagnose(request, timeout=60)
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Result(latencies, elapsed)


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
        f"{name:<44} {concurrency:>5} {result.throughput:>10.0f} "
        f"{result.percentile_ms(50):>9.2f} {result.percentile_ms(99):>9.2f}"
    )


VIA_GATEWAY = "(b) skin_service via gateway"
NAIVE = "(c) naive one-image-per-call"


async def serve_and_measure(
    images: list[bytes], calls: int
) -> tuple[dict[str, dict[int, Result]], dict[str, float]]:
    """Measures (b) and (c) at 1 and 32; returns them and each server's peak RSS in MiB."""
    results: dict[str, dict[int, Result]] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as state_dir:
        skin, gateway = start_stack(Path(state_dir), WORKLOADS["skin"])
        try:
            results[VIA_GATEWAY] = {
                1: await measure(gateway.address, images, 1, calls // 8),
                32: await measure(gateway.address, images, 32, calls),
            }
            rss["skin_service"] = peak_rss_mib(skin)
        finally:
            gateway.terminate()
            skin.terminate()
    naive = start("naive", "tests.bench.naive_skin_server", "NAIVE_")
    try:
        await wait_for_naive(naive, images[0])
        results[NAIVE] = {
            1: await measure(naive.address, images, 1, calls // 8),
            32: await measure(naive.address, images, 32, calls),
        }
        rss["naive server"] = peak_rss_mib(naive)
    finally:
        naive.kill()
    return results, rss


async def main_async(calls: int, limit_s: float) -> int:
    """Runs the measurements, prints them and records the ratios; returns 0 unless it crashed."""
    started = time.perf_counter()
    images = phone_jpegs()
    backend = skin_limit.load_backend()
    model_only = skin_limit.model_only(backend, limit_s)
    limit = skin_limit.decode_included(backend, images, limit_s)
    del backend
    results, peak_rss = await serve_and_measure(images, calls)
    print(f"skin model, {len(images)} distinct 600x450 JPEGs (~{len(images[0]) // 1024} KiB)")
    print(f"{'':<44} {'conc':>5} {'images/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    batch = skin_limit.BATCH
    print(f"{f'(a) model-only limit, batch {batch}, no decode':<44} {'-':>5} {model_only:>10.0f}")
    label = f"(a') decode-included limit, {skin_limit.threads()} threads"
    print(f"{label:<44} {'-':>5} {limit:>10.0f}")
    for name, by_concurrency in results.items():
        for concurrency, result in by_concurrency.items():
            print(row(name, concurrency, result))
    rss = ", ".join(f"{name} {mib:.0f} MiB" for name, mib in peak_rss.items())
    print(f"peak RSS: {rss}")
    served = report.Figure("skin via gateway c=32", results[VIA_GATEWAY][32].throughput, "img/s")
    ratios = [
        report.ratio(
            "skin via gateway c=32 / decode-included limit",
            served,
            report.Figure("decode-included limit", limit, "img/s"),
            ">=",
            TARGET_VS_LIMIT,
            report.Figure("model-only limit (beside)", model_only, "img/s"),
        ),
        report.ratio(
            "skin via gateway c=32 / naive server c=32",
            served,
            report.Figure("naive c=32", results[NAIVE][32].throughput, "img/s"),
            ">=",
            TARGET_VS_NAIVE,
        ),
    ]
    notes = {"calls_at_32": calls, "limit_seconds": limit_s, "peak_rss_mib": peak_rss}
    report.finish("skin", ratios, started, notes)
    return 0


def main() -> None:
    """Runs the benchmark."""
    quick = report.quick()
    default = QUICK_CALLS if quick else FULL_CALLS
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else default
    sys.exit(asyncio.run(main_async(calls, QUICK_LIMIT_S if quick else FULL_LIMIT_S)))


if __name__ == "__main__":
    main()
