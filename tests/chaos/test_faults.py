"""Faults of the serving path on real processes: a service killed, SIGTERM, a gateway lost, a soak.

Every scenario runs the real skin service (its shipped demo model) or MRI service behind a
real gateway, bounds itself in time, prints its figures in the suite's table (conftest.py)
and stops what it started. `make chaos` runs the full form (a 10-minute soak);
`make test` the short one (1 minute).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median

import grpc
import psutil
import pytest
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc
from medimg.v1 import series_analysis_service_pb2 as series_pb
from medimg.v1 import series_analysis_service_pb2_grpc as series_grpc

from mri_service.phantom import PhantomSpec, generate_series, write_series_zip
from tests.chaos.conftest import FULL, record
from tests.chaos.load import diagnose_once, run_load
from tests.support.processes import Process, start, start_gateway, start_mri, wait_until_serving
from tests.test_skin_e2e import MODEL_DIR, photo, start_skin
from tests.tfserving_fake.fixture_model import shipped_model_present

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shipped_model_present(), reason="the skin demo model is absent"),
]

CLIENTS = 8
SOAK_S = 600.0 if FULL else 60.0
# Codes a caller may retry: the service was away, or told the caller to come back.
RETRYABLE = {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}


# As in Kubernetes (5 s there): after SIGTERM a server still takes calls this long, so a
# call sent just before the signal is not refused while it travels.
DRAIN_DELAY_S = "1"


@pytest.fixture
def skin() -> Iterator[Process]:
    process = start_skin(SKIN_DRAIN_DELAY_SECONDS=DRAIN_DELAY_S)
    yield process
    process.kill()


@pytest.fixture
def gateway(skin: Process, tmp_path: Path) -> Iterator[Process]:
    routes = f"skin=image@{skin.address}"
    process = start_gateway(routes, tmp_path / "gateway", GATEWAY_DRAIN_DELAY_SECONDS=DRAIN_DELAY_S)
    yield process
    process.kill()


def test_a_skin_service_killed_under_load_loses_no_call(skin: Process, gateway: Process) -> None:
    """Every call ends with an answer or a retryable refusal; the restarted service serves."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(run_load, gateway.address, photo(), clients=CLIENTS, until=stop.is_set)
        time.sleep(3)
        skin.kill()
        down_at = time.monotonic()
        time.sleep(2)
        # On the same port: the gateway's route names that address.
        restarted = start(
            "skin", "skin_service", "SKIN_", env={"SKIN_MODEL_DIR": str(MODEL_DIR)}, port=skin.port
        )
        wait_until_serving(restarted, timeout=60)
        back_s = time.monotonic() - down_at
        try:
            time.sleep(3)
            stop.set()
            outcomes = load.result(timeout=60)
            with grpc.insecure_channel(gateway.address) as channel:
                after = diagnose_once(pb_grpc.DiagnosisServiceStub(channel), photo(), 30)
        finally:
            restarted.kill()
    others = {code for code in outcomes.codes if code != "OK" and code not in RETRYABLE}
    held = not others and outcomes.codes["OK"] > 0 and after == "OK"
    record(
        "skin service SIGKILLed under 8 clients, restarted",
        f"{outcomes.total} calls: {outcomes.describe()}; back after {back_s:.1f} s",
        held,
    )
    assert not others, outcomes.describe()
    assert after == "OK"


def test_sigterm_with_calls_in_flight_drops_none(skin: Process, gateway: Process) -> None:
    """The gateway and the service both drain what they hold before they exit."""
    image = photo()
    with grpc.insecure_channel(gateway.address) as channel:
        stub = pb_grpc.DiagnosisServiceStub(channel)
        diagnose_once(stub, image, 30)  # warm: the channel is up before the burst
        started = threading.Semaphore(0)

        def call() -> str:
            started.release()
            return diagnose_once(stub, image, 60)

        with ThreadPoolExecutor(32) as pool:
            calls = [pool.submit(call) for _ in range(32)]
            # Every call's thread is running (on a busy machine starting 32 takes a while)
            # and has had a moment to send, so that SIGTERM finds all 32 sent.
            for _ in calls:
                started.acquire(timeout=30)
            time.sleep(0.05)
            in_flight = sum(not call.done() for call in calls)
            stopping = pool.submit(gateway.terminate)
            service_exit = skin.terminate()
            codes = [call.result() for call in calls]
            gateway_exit = stopping.result()
    completed = codes.count("OK")
    held = completed == len(codes) and gateway_exit == 0 and service_exit == 0
    record(
        "SIGTERM to gateway and skin with 32 calls sent (drain delay 1 s)",
        f"{in_flight} in flight at SIGTERM, {completed}/{len(codes)} completed, "
        f"exit codes gateway {gateway_exit}, skin {service_exit}",
        held,
    )
    assert codes == ["OK"] * len(codes)
    assert (gateway_exit, service_exit) == (0, 0)


def test_the_gateway_lost_mid_upload_is_a_retryable_error_and_nothing_is_kept(
    tmp_path: Path,
) -> None:
    """A series upload cut by the gateway's death: UNAVAILABLE, an empty spool, a resend works."""
    spool = tmp_path / "spool"
    spool.mkdir()
    mri = start_mri(spool, timeout=60)
    data = write_series_zip(
        generate_series(PhantomSpec(slices=16, size=128, seed=3)), tmp_path / "case.zip"
    ).read_bytes()
    state = tmp_path / "gateway"
    gateway = start_gateway(f"mri=series@{mri.address}", state)
    sent = threading.Event()

    def slow_upload() -> Iterator[series_pb.AnalyzeSeriesRequest]:
        meta = series_pb.SeriesUploadMetadata(disease="mri", total_size_bytes=len(data))
        yield series_pb.AnalyzeSeriesRequest(metadata=meta)
        for index, start_at in enumerate(range(0, len(data), 16 * 1024)):
            if index == 4:
                sent.set()
            time.sleep(0.05)
            yield series_pb.AnalyzeSeriesRequest(chunk_data=data[start_at : start_at + 16 * 1024])

    def analyse(address: str, requests: Iterator[series_pb.AnalyzeSeriesRequest]) -> str:
        with grpc.insecure_channel(address) as channel:
            stub = series_grpc.SeriesAnalysisServiceStub(channel)
            try:
                stub.AnalyzeSeries(requests, timeout=120)
            except grpc.RpcError as error:
                return str(error.code().name)
        return "OK"

    try:
        with ThreadPoolExecutor(1) as pool:
            upload = pool.submit(analyse, gateway.address, slow_upload())
            assert sent.wait(30)
            gateway.kill()
            cut = upload.result(timeout=60)
        deadline = time.monotonic() + 10
        while any(spool.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = sorted(path.name for path in spool.iterdir())
        again = start_gateway(f"mri=series@{mri.address}", state)
        try:
            meta = series_pb.SeriesUploadMetadata(disease="mri", total_size_bytes=len(data))
            whole = [
                series_pb.AnalyzeSeriesRequest(metadata=meta),
                series_pb.AnalyzeSeriesRequest(chunk_data=data),
            ]
            resent = analyse(again.address, iter(whole))
        finally:
            again.kill()
    finally:
        gateway.kill()
        mri_exit = mri.terminate()
    held = cut in RETRYABLE and not left and resent == "OK" and mri_exit == 0
    record(
        "gateway SIGKILLed mid streamed series upload",
        f"caller got {cut}; service spool afterwards: {len(left)} files; resend {resent}",
        held,
    )
    assert cut in RETRYABLE, cut
    assert not left, left
    assert resent == "OK"


def test_the_skin_path_soaks_at_a_memory_plateau(skin: Process, gateway: Process) -> None:
    """RSS of the service and the gateway after warm-up stays within 10% of its plateau."""
    processes = {
        "skin": psutil.Process(skin.popen.pid),
        "gateway": psutil.Process(gateway.popen.pid),
    }
    samples: dict[str, list[float]] = {name: [] for name in processes}
    started = time.monotonic()
    done = threading.Event()

    def over() -> bool:
        return done.is_set() or time.monotonic() - started > SOAK_S

    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(run_load, gateway.address, photo(), clients=CLIENTS, until=over)
        while not over():
            for name, process in processes.items():
                samples[name].append(process.memory_info().rss / 2**20)
            time.sleep(1.0)
        done.set()
        outcomes = load.result(timeout=60)
    verdicts, figures = [], []
    for name, rss in samples.items():
        third = max(len(rss) // 3, 1)
        plateau = median(rss[third : 2 * third])
        late = rss[2 * third :]
        drift = max(abs(value - plateau) / plateau for value in late)
        verdicts.append(drift <= 0.10)
        figures.append(
            f"{name} {rss[0]:.0f} -> plateau {plateau:.0f} MiB, last third within {drift:.1%}"
        )
    rate = outcomes.codes["OK"] / SOAK_S
    held = all(verdicts) and set(outcomes.codes) == {"OK"}
    record(
        f"skin soak, {CLIENTS} clients, {SOAK_S:.0f} s",
        f"{outcomes.describe()} ({rate:.0f}/s); " + "; ".join(figures),
        held,
    )
    assert set(outcomes.codes) == {"OK"}, outcomes.describe()
    assert all(verdicts), figures
