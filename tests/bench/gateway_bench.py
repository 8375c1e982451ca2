"""Measures what the gateway costs: Diagnose via the gateway vs directly to the service.

Run with `make bench`. Starts the test-only toy service and the gateway as real
processes on loopback, then, for concurrency 1 and 16, alternates rounds against each
target and prints throughput and p50/p99 latency side by side with their ratios.

Client, gateway and service share this machine's cores, so every CPU cycle the
gateway spends is taken from the service. How much that matters depends on how much
work the service does per call, so the bench runs two workloads:

- `bare`: the toy model is ~1.6 MFLOP, so the service's cost is almost all gRPC and
  JPEG decoding: the worst case for a proxy.
- `cnn-sized`: the toy's hidden layer is widened to ~25 MFLOP per image, the order of
  a small CNN on CPU.
- `skin`: the real skin service with its shipped demo model (embedded backend).

Targets (issue 17): via gateway >= 0.95 x direct throughput at 16 and <= 0.5 ms added
p50 at 1; each workload's rows go through tests/bench/report.py (printed side by side and
recorded in var/bench/results.json). Targets are reported, not asserted: the exit status
is 0 unless the bench crashes. BENCH_QUICK=1 runs fewer calls and rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc
from PIL import Image

from tests.bench import report
from tests.support.processes import Process, start, wait_until_serving

TARGET_THROUGHPUT_RATIO = 0.95
TARGET_ADDED_P50_MS = 0.5
# calls per round at 16 and alternating rounds: full, and BENCH_QUICK's short form
FULL_CALLS, FULL_ROUNDS = 4000, 3
QUICK_CALLS, QUICK_ROUNDS = 320, 2


@dataclass(frozen=True)
class Result:
    """Latencies of one round of calls against one target."""

    latencies_s: list[float]
    seconds: float

    @property
    def throughput(self) -> float:
        """Returns calls per second."""
        return len(self.latencies_s) / self.seconds

    def percentile_ms(self, q: float) -> float:
        """Returns the q-th latency percentile in milliseconds."""
        return float(np.percentile(self.latencies_s, q) * 1000)


def photo_jpeg(size: int = 256) -> bytes:
    """Returns a JPEG with photo-like noise, the size of a small upload."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


async def run_round(
    address: str, disease: str, image: bytes, concurrency: int, calls: int
) -> Result:
    """Makes `calls` Diagnose calls from `concurrency` concurrent workers."""
    request = pb.DiagnoseRequest(disease=disease, image=image)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DiagnosisServiceStub(channel)
        await stub.Diagnose(request, timeout=30)
        remaining = calls

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                await stub.Diagnose(request, timeout=30)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Result(latencies, elapsed)


def merge(results: list[Result]) -> Result:
    """Returns the rounds as one result."""
    return Result(
        [latency for result in results for latency in result.latencies_s],
        sum(result.seconds for result in results),
    )


async def measure(
    service: Process,
    gateway: Process,
    disease: str,
    image: bytes,
    concurrency: int,
    calls: int,
    rounds: int,
) -> tuple[Result, Result]:
    """Alternates rounds direct / via gateway so that drift hits both alike."""
    direct_rounds: list[Result] = []
    gateway_rounds: list[Result] = []
    for _ in range(rounds):
        for address, results in (
            (service.address, direct_rounds),
            (gateway.address, gateway_rounds),
        ):
            results.append(await run_round(address, disease, image, concurrency, calls))
    return merge(direct_rounds), merge(gateway_rounds)


def report_rows(concurrency: int, direct: Result, gateway: Result) -> list[str]:
    """Returns the table rows of one concurrency level."""
    rows = []
    for name, result in (("direct", direct), ("via gateway", gateway)):
        rows.append(
            f"{concurrency:>5}  {name:<12} {result.throughput:>10.0f} "
            f"{result.percentile_ms(50):>9.2f} {result.percentile_ms(99):>9.2f}"
        )
    return rows


@dataclass(frozen=True)
class Workload:
    """A service to measure the gateway in front of."""

    disease: str
    module: str
    prefix: str
    env: dict[str, str]


WORKLOADS = {
    "bare": Workload("toy", "tests.toy_service", "TOY_", {"TOY_HIDDEN_UNITS": "256"}),
    "cnn-sized": Workload("toy", "tests.toy_service", "TOY_", {"TOY_HIDDEN_UNITS": "4096"}),
    "skin": Workload("skin", "skin_service", "SKIN_", {}),
}


def start_stack(state_dir: Path, workload: Workload) -> tuple[Process, Process]:
    """Starts the workload's service and a gateway routing its disease to it."""
    service = start(
        workload.disease,
        workload.module,
        workload.prefix,
        env={f"{workload.prefix}LOG_LEVEL": "WARNING", **workload.env},
    )
    wait_until_serving(service, timeout=120)
    gateway = start(
        "gateway",
        "gateway",
        "GATEWAY_",
        env={
            "GATEWAY_ROUTES": f"{workload.disease}=image@{service.address}",
            "GATEWAY_STATE_DIR": str(state_dir),
            "GATEWAY_LOG_LEVEL": "WARNING",
        },
    )
    wait_until_serving(gateway)
    return service, gateway


@dataclass(frozen=True)
class Outcome:
    """Both concurrency levels of one workload, direct and via the gateway."""

    at_1: tuple[Result, Result]
    at_16: tuple[Result, Result]

    @property
    def throughput_ratio(self) -> float:
        """Returns via-gateway throughput over direct throughput at concurrency 16."""
        return self.at_16[1].throughput / self.at_16[0].throughput

    @property
    def added_p50_ms(self) -> float:
        """Returns the p50 latency the gateway adds at concurrency 1."""
        return self.at_1[1].percentile_ms(50) - self.at_1[0].percentile_ms(50)


async def run_workload(workload: Workload, image: bytes, calls: int, rounds: int) -> Outcome:
    """Starts a fresh stack for one workload and measures it."""
    with tempfile.TemporaryDirectory() as state_dir:
        service, gateway = start_stack(Path(state_dir), workload)
        try:
            disease = workload.disease
            at_1 = await measure(service, gateway, disease, image, 1, calls // 4, rounds)
            at_16 = await measure(service, gateway, disease, image, 16, calls, rounds)
        finally:
            gateway.terminate()
            service.terminate()
    return Outcome(at_1, at_16)


def ratios(name: str, outcome: Outcome) -> list[report.Ratio]:
    """Returns the workload's two rows: throughput via gateway / direct at 16, added p50 at 1."""
    direct_16, gateway_16 = outcome.at_16
    direct_1, gateway_1 = outcome.at_1
    throughput = report.ratio(
        f"{name}: via gateway / direct calls/s, c=16",
        report.Figure("via gateway c=16", gateway_16.throughput, "calls/s"),
        report.Figure("direct c=16", direct_16.throughput, "calls/s"),
        ">=",
        TARGET_THROUGHPUT_RATIO,
    )
    added = report.Ratio(
        f"{name}: added p50, c=1",
        outcome.added_p50_ms,
        TARGET_ADDED_P50_MS,
        "<=",
        (
            report.Figure("p50 via gateway c=1", gateway_1.percentile_ms(50), "ms"),
            report.Figure("p50 direct c=1", direct_1.percentile_ms(50), "ms"),
        ),
        unit="ms",
    )
    return [throughput, added]


async def main_async(calls: int, rounds: int) -> int:
    """Runs the benchmark, prints the table and records the ratios; returns 0 unless it crashed."""
    started = time.perf_counter()
    image = photo_jpeg()
    outcomes = {
        name: await run_workload(workload, image, calls, rounds)
        for name, workload in WORKLOADS.items()
    }
    print(f"Diagnose, {len(image) // 1024} KiB JPEG per call, {rounds} alternating rounds")
    header = f"{'conc':>5}  {'target':<12} {'calls/s':>10} {'p50 ms':>9} {'p99 ms':>9}"
    print(f"{'workload':<10} {header}")
    for name, outcome in outcomes.items():
        for row in report_rows(1, *outcome.at_1) + report_rows(16, *outcome.at_16):
            print(f"{name:<10} {row}")
    rows = [row for name, outcome in outcomes.items() for row in ratios(name, outcome)]
    notes = {"calls_per_round_at_16": calls, "calls_per_round_at_1": calls // 4, "rounds": rounds}
    report.finish("gateway", rows, started, notes)
    return 0


def main() -> None:
    """Parses the options and runs the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = report.quick()
    parser.add_argument(
        "--calls",
        type=int,
        default=QUICK_CALLS if quick else FULL_CALLS,
        help=f"calls per round at 16 (default {FULL_CALLS}, {QUICK_CALLS} with BENCH_QUICK=1)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=QUICK_ROUNDS if quick else FULL_ROUNDS,
        help="alternating rounds per target",
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args.calls, args.rounds)))


if __name__ == "__main__":
    main()
