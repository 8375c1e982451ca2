"""MRI serving benchmark: a series through the gateway, split by stage, beside its limits.

Run with `make bench` (or `python -m tests.bench.mri_bench`). Prints, from one run:
  (a) the model-only limit: both slice models in this process over the series'
      preprocessed inputs, MRI_BATCH_SLICES per call, in anatomical slices per second
      (one slice = both models over it), the best of torch on one thread and on all;
  (a') the decode-included limit: unzip + decode + preprocess of every file the models use
      and both models, in this process on one thread per core, staged or overlapped,
      whichever is faster (tests/bench/mri_limit.py): the best one process does with the
      service's work after the upload;
  (b) a generated 4 x 64-slice 256x256 series through the gateway to mri_service
      (embedded backend): end-to-end time split into upload, unzip + decode +
      preprocess, and model (the service's own timings), and end-to-end slices/s;
  (c) the same series through mri_service on the torchserve backend (a real
      TorchServe on loopback, token authorization on);
  (d) mri_service's peak resident memory (VmHWM) after a 4 x 16-slice and, in a fresh
      process, after a 4 x 160-slice 512x512 series;
with the ratios (b)/(a') >= 0.8, embedded (b) / TorchServe (c) end to end >= 1.0 and
(d) large / small <= 2 through tests/bench/report.py (printed, and recorded in
var/bench/results.json). Targets are reported, not asserted. BENCH_QUICK=1 uses a
4 x 32-slice series, one timed call per backend, fewer limit repeats and a 4 x 48-slice
large series for (d).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from medimg.v1 import series_analysis_service_pb2 as pb
from medimg.v1 import series_analysis_service_pb2_grpc as pb_grpc

from mri_service.archive import build_archives
from mri_service.phantom import PhantomSpec, generate_series, write_series_zip
from mri_service.settings import DEFAULT_MODEL_DIR
from tests.bench import mri_limit, report
from tests.support.processes import Process, start, wait_until_serving
from tests.support.torchserve import running_torchserve

TARGET_VS_LIMIT = 0.8
TARGET_VS_TORCHSERVE = 1.0
TARGET_RSS_RATIO = 2.0
BATCH_SLICES = 16
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does: the full run's, or BENCH_QUICK's short form."""

    bench_slices: int  # per phase, 256x256
    repeats: int  # timed calls per backend, after a warm-up
    limit_repeats: int
    large_slices: int  # per phase, 512x512, for peak RSS beside 4 x 16


FULL = Sizes(bench_slices=64, repeats=3, limit_repeats=5, large_slices=160)
QUICK = Sizes(bench_slices=32, repeats=1, limit_repeats=2, large_slices=48)


@dataclass(frozen=True)
class Run:
    """One series analysed end to end, with the service's own stage timings."""

    total_s: float
    upload_ms: float
    prepare_ms: float
    model_ms: float
    slices: int


def analyse(address: str, data: bytes) -> Run:
    """Sends the zip through address and returns the timings of the call."""

    def messages() -> Iterator[pb.AnalyzeSeriesRequest]:
        yield pb.AnalyzeSeriesRequest(
            metadata=pb.SeriesUploadMetadata(disease="mri", total_size_bytes=len(data))
        )
        for offset in range(0, len(data), CHUNK):
            yield pb.AnalyzeSeriesRequest(chunk_data=data[offset : offset + CHUNK])

    options = [("grpc.max_send_message_length", 8 * CHUNK)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.SeriesAnalysisServiceStub(channel)
        started = time.perf_counter()
        response: pb.AnalyzeSeriesResponse = stub.AnalyzeSeries(messages(), timeout=900)
        total = time.perf_counter() - started
    t = response.timings
    return Run(total, t.upload_ms, t.prepare_ms, t.model_ms, response.slice_count)


def median_run(address: str, data: bytes, repeats: int) -> Run:
    """Returns the run with the median total time of `repeats`, after one warm-up."""
    analyse(address, data)
    runs = sorted((analyse(address, data) for _ in range(repeats)), key=lambda r: r.total_s)
    return runs[len(runs) // 2]


def peak_rss_mib(process: Process) -> float:
    """Returns the process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


@contextmanager
def service(spool: Path, **env: str) -> Iterator[Process]:
    """Runs mri_service with the shipped models for the with block."""
    settings = {"MRI_SPOOL_DIR": str(spool), "MRI_BATCH_SLICES": str(BATCH_SLICES), **env}
    process = start("mri", "mri_service", "MRI_", env=settings)
    try:
        wait_until_serving(process, timeout=120)
        yield process
    finally:
        process.terminate()


@contextmanager
def gateway_to(target: Process, state_dir: Path) -> Iterator[Process]:
    """Runs a gateway that routes mri to target for the with block."""
    env = {"GATEWAY_ROUTES": f"mri=series@{target.address}", "GATEWAY_STATE_DIR": str(state_dir)}
    process = start("gateway", "gateway", "GATEWAY_", env=env)
    try:
        wait_until_serving(process)
        yield process
    finally:
        process.terminate()


def series_zip(work: Path, name: str, *, slices: int, size: int) -> Path:
    """Writes a generated series with a lesion; returns its zip."""
    print(f"generating {name}: 4 x {slices} slices of {size}x{size} ...", flush=True)
    series = generate_series(PhantomSpec(slices=slices, size=size, lesion=True, seed=7))
    return write_series_zip(series, work / f"{name}.zip")


def stage_line(label: str, run: Run) -> str:
    other = run.total_s * 1000 - run.upload_ms - run.prepare_ms - run.model_ms
    return (
        f"{label:<26} total {run.total_s * 1000:7.0f} ms = upload {run.upload_ms:6.0f}"
        f" + unzip/decode/preprocess {run.prepare_ms:6.0f} + model {run.model_ms:6.0f}"
        f" + other {other:5.0f} ms  -> {run.slices / run.total_s:6.1f} slices/s"
    )


def serve(work: Path, data: bytes, repeats: int) -> tuple[Run, Run]:
    """Returns the median run of the series via the gateway, on embedded and on torchserve."""
    spool = work / "spool"
    with service(spool) as mri, gateway_to(mri, work / "gw") as gateway:
        embedded = median_run(gateway.address, data, repeats)
    archives = build_archives(DEFAULT_MODEL_DIR, work / "store")
    models = [path.stem for path in archives.values()]
    with running_torchserve(work / "store", models) as torchserve:
        remote = {
            "MRI_BACKEND": "torchserve",
            "MRI_TORCHSERVE_ADDRESS": torchserve.grpc_address,
            "MRI_TORCHSERVE_INFERENCE_KEY": torchserve.inference_key,
        }
        with service(spool, **remote) as mri, gateway_to(mri, work / "gw2") as gateway:
            served = median_run(gateway.address, data, repeats)
    return embedded, served


def peak_rss(work: Path, large_slices: int) -> dict[int, float]:
    """Returns mri_service's peak RSS in MiB after one 512x512 series, by slices per phase."""
    rss = {}
    for slices in (16, large_slices):
        path = series_zip(work, f"rss-{slices}", slices=slices, size=512)
        with service(work / "spool") as mri:
            analyse(mri.address, path.read_bytes())
            rss[slices] = peak_rss_mib(mri)
        path.unlink()
    return rss


def ratios(
    limits: mri_limit.Limits, embedded: Run, served: Run, rss: dict[int, float]
) -> list[report.Ratio]:
    """Returns the bench's rows: end to end vs its limit and vs TorchServe, RSS large/small."""
    e2e = report.Figure("end to end via gateway", embedded.slices / embedded.total_s, "slices/s")
    small, large = sorted(rss)
    return [
        report.ratio(
            "MRI end to end / decode-included limit",
            e2e,
            report.Figure(
                f"decode-included limit ({limits.best_way})", limits.decode_included, "slices/s"
            ),
            ">=",
            TARGET_VS_LIMIT,
            report.Figure("model-only limit (beside)", limits.model_only, "slices/s"),
        ),
        report.ratio(
            "MRI end to end embedded / TorchServe",
            e2e,
            report.Figure("TorchServe via gateway", served.slices / served.total_s, "slices/s"),
            ">=",
            TARGET_VS_TORCHSERVE,
        ),
        report.ratio(
            "MRI peak RSS large / small series",
            report.Figure(f"4x{large}x512² series", rss[large], "MiB"),
            report.Figure(f"4x{small}x512² series", rss[small], "MiB"),
            "<=",
            TARGET_RSS_RATIO,
        ),
    ]


def main() -> int:
    """Runs every measurement, prints the report and records the ratios; 0 unless it crashed."""
    started = time.perf_counter()
    sizes = QUICK if report.quick() else FULL
    with tempfile.TemporaryDirectory(prefix="mri-bench-") as tmp:
        work = Path(tmp)
        (work / "spool").mkdir()
        slices = sizes.bench_slices
        bench_zip = series_zip(work, "bench", slices=slices, size=256)
        limits = mri_limit.measure(bench_zip, BATCH_SLICES, sizes.limit_repeats)
        embedded, served = serve(work, bench_zip.read_bytes(), sizes.repeats)
        rss = peak_rss(work, sizes.large_slices)
    print()
    print(
        f"MRI series benchmark (4 x {slices} slices, 256x256 DICOM; model input 128;"
        " shipped models)"
    )
    print(
        f"(a)  model-only limit, batch {BATCH_SLICES}: {limits.model_only:6.1f} slices/s"
        " (both models)"
    )
    print(
        f"(a') decode-included limit, {mri_limit.threads()} decode threads:"
        f" {limits.decode_included:6.1f} slices/s ({limits.best_way})"
    )
    for configuration, value in limits.to_json().items():
        print(f"     {configuration:<28} {value:6.1f} slices/s")
    print(stage_line("(b) via gateway, embedded", embedded))
    print(stage_line("(c) via gateway, torchserve", served))
    print(
        f"embedded / TorchServe: end-to-end {served.total_s / embedded.total_s:.2f}x faster,"
        f" model stage {served.model_ms / embedded.model_ms:.2f}x faster"
    )
    print("(d) peak RSS: " + ", ".join(f"4 x {n} x 512^2 {mib:.0f} MiB" for n, mib in rss.items()))
    notes = {
        "series_slices": slices,
        "repeats": sizes.repeats,
        "stages_ms": {"embedded": vars(embedded), "torchserve": vars(served)},
        "limits_slices_per_s": limits.to_json(),
    }
    report.finish("mri", ratios(limits, embedded, served, rss), started, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
