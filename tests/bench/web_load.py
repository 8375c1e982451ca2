"""Load test of the web tier: concurrent API clients uploading skin photos, beside gateway-direct.

Run with `make bench`, or `python -m tests.bench.web_load [--clients 50 --seconds 60]`.
Starts the real stack on free loopback ports: skin_service (shipped demo model) and the
gateway (tests/bench/gateway_bench.py's start_stack), a throwaway PostgreSQL 15
(web/tests/postgres.py; SQLite with `--database sqlite` or when PostgreSQL is missing),
migrated by `python web/manage.py migrate` as the deployment's Job does, and the web tier as
`python -m web` (uvicorn, `--web-workers` processes, default one per core) with production
settings (WEB_DEBUG off, a random SECRET_KEY, plain HTTP on loopback) and a temporary
WEB_MEDIA_ROOT. It creates a user and an API token with `manage.py shell`, then:

  (w) `--clients` threads, each with its own keep-alive HTTP connection, POST multipart
      600x450 JPEGs to /api/v1/diagnoses/ for `--seconds`: every answer but 201 is an error;
  (g) the same images, at the same concurrency, as Diagnose calls straight to the gateway
      for `--gateway-seconds`.

Prints calls/s and p50/p99 latency of both; the ratio (w)/(g) (target >= 0.5) and the
upload errors (target 0) go through tests/bench/report.py (printed, and recorded in
var/bench/results.json). Targets are reported, not asserted: the exit status is 0 unless
the bench crashes. BENCH_QUICK=1 runs 12 s of uploads and 8 s of gateway-direct calls.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc

from tests.bench import report
from tests.bench.gateway_bench import WORKLOADS, Result, start_stack
from tests.bench.skin_bench import phone_jpegs
from tests.support.processes import ROOT, Process, start
from web.tests.postgres import PostgresServer, PostgresUnavailable

TARGET_RATIO = 0.5
TARGET_ERRORS = 0.0
# seconds of uploads, and of gateway-direct calls: the full run's defaults, and BENCH_QUICK's
FULL_SECONDS, FULL_GATEWAY_SECONDS = 60.0, 30.0
QUICK_SECONDS, QUICK_GATEWAY_SECONDS = 12.0, 8.0
API_PATH = "/api/v1/diagnoses/"
EMAIL = "loadtest@example.com"
# Shown on the first errors of each kind, so that a failure says what the server answered.
ERROR_SAMPLES = 5
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit): ")


@dataclass
class WebDatabase:
    """The web tier's database: its URL, a description, and how to stop it."""

    url: str
    name: str
    server: PostgresServer | None = None

    def stop(self) -> None:
        """Stops the PostgreSQL server, if one was started."""
        if self.server is not None:
            self.server.stop()


def start_database(choice: str, scratch: Path) -> WebDatabase:
    """Starts PostgreSQL (or falls back to SQLite when it cannot run here) or uses SQLite."""
    if choice == "postgres":
        try:
            server = PostgresServer.start()
        except PostgresUnavailable as unavailable:
            print(f"PostgreSQL unavailable ({unavailable}); using SQLite", file=sys.stderr)
        else:
            return WebDatabase(server.url, "PostgreSQL 15", server)
    return WebDatabase(f"sqlite:///{scratch / 'db.sqlite3'}", "SQLite (WAL)")


def web_env(database: WebDatabase, gateway: Process, scratch: Path) -> dict[str, str]:
    """Returns the web tier's environment: production settings, but plain HTTP on loopback."""
    return {
        "DJANGO_SETTINGS_MODULE": "web.config.settings",
        "WEB_DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "WEB_HTTPS": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database.url,
        "WEB_MIGRATE_ON_START": "false",
        "GATEWAY_ADDR": gateway.address,
        "WEB_MEDIA_ROOT": str(scratch / "media"),
        "WEB_STATIC_ROOT": str(scratch / "static"),
        "WEB_LOG_LEVEL": "WARNING",
        "REDIS_URL": "",
        "EMAIL_HOST": "",
        # One token stands for every load client here: raise its limits, keep them on.
        "WEB_API_RATE_USER": "1000000/minute",
        "WEB_API_RATE_UPLOAD": "1000000/minute",
    }


def manage(env: dict[str, str], *args: str) -> str:
    """Runs `python web/manage.py ARGS` in the web tier's environment; returns its output."""
    completed = subprocess.run(
        [sys.executable, str(ROOT / "web" / "manage.py"), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{completed.stdout}{completed.stderr}")
    return completed.stdout


CREATE_TOKEN = f"""
from rest_framework.authtoken.models import Token
from web.accounts.models import User
user = User.objects.create_user(email={EMAIL!r}, password="load-test-{uuid.uuid4().hex}",
                                name="Load Test", email_results=False)
print(Token.objects.create(user=user).key)
"""


def start_web(env: dict[str, str]) -> Process:
    """Starts `python -m web` on a free port and waits until /healthz answers."""
    web = start("web", "web", "WEB_", env={**env, "WEB_HOST": "127.0.0.1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if web.popen.poll() is not None:
            raise RuntimeError(f"web exited early:\n{web.log()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return web
        except OSError:
            pass
        time.sleep(0.1)
    web.terminate()
    raise TimeoutError(f"web not answering /healthz after 60s:\n{web.log()}")


def multipart(image: bytes, name: str) -> tuple[bytes, str]:
    """Returns a multipart/form-data body with the image and disease=skin, and its type."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="disease"\r\n\r\nskin\r\n'.encode(),
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="image"; filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode(),
            image,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class WebOutcome:
    """Latencies of the successful uploads, and what went wrong with the others."""

    result: Result
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        """Returns how many uploads did not answer 201."""
        return sum(self.errors.values())


def run_web_clients(
    port: int, token: str, images: list[bytes], clients: int, seconds: float
) -> WebOutcome:
    """Runs `clients` threads uploading in a loop until `seconds` have passed."""
    bodies = [multipart(image, f"lesion-{index}.jpg") for index, image in enumerate(images)]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    samples: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start_gate.wait()
        sent = 0
        while time.perf_counter() < stop_at[0]:
            body, content_type = bodies[(number + sent) % len(bodies)]
            sent += 1
            headers = {
                "Authorization": f"Token {token}",
                "Content-Type": content_type,
                "X-Request-ID": f"load-{number}-{sent}",
            }
            began = time.perf_counter()
            try:
                connection.request("POST", API_PATH, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                status, reason = response.status, f"HTTP {response.status}"
                if status == 201 and json.loads(answer).get("status") != "done":
                    status, reason = 0, "201 but not done"
            except (OSError, http.client.HTTPException) as failure:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status, reason, answer = 0, type(failure).__name__, str(failure).encode()
            elapsed = time.perf_counter() - began
            with lock:
                if status == 201:
                    latencies.append(elapsed)
                else:
                    errors[reason] += 1
                    if len(samples) < ERROR_SAMPLES:
                        samples.append(f"{reason}: {answer[:300]!r}")
        connection.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start_gate.wait()
    for thread in threads:
        thread.join()
    return WebOutcome(Result(latencies, time.perf_counter() - began), errors, samples)


def warm_web(port: int, token: str, images: list[bytes]) -> None:
    """Uploads each image once, so that first-call costs stay out of the measurement."""
    for index, image in enumerate(images[:4]):
        body, content_type = multipart(image, f"warm-{index}.jpg")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request(
            "POST",
            API_PATH,
            body=body,
            headers={"Authorization": f"Token {token}", "Content-Type": content_type},
        )
        response = connection.getresponse()
        answer = response.read()
        connection.close()
        if response.status != 201:
            raise RuntimeError(f"warm-up upload answered {response.status}: {answer[:500]!r}")


async def run_gateway_direct(
    address: str, images: list[bytes], concurrency: int, seconds: float
) -> Result:
    """Makes Diagnose calls of the images from `concurrency` workers for `seconds`."""
    requests = [pb.DiagnoseRequest(disease="skin", image=image) for image in images]
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DiagnosisServiceStub(channel)
        for request in requests[:4]:
            await stub.Diagnose(request, timeout=30)
        stop_at = time.perf_counter() + seconds

        async def worker(number: int) -> None:
            sent = 0
            while time.perf_counter() < stop_at:
                request = requests[(number + sent) % len(requests)]
                sent += 1
                began = time.perf_counter()
                await stub.Diagnose(request, timeout=60)
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Result(latencies, elapsed)


def cpu_seconds(process: Process) -> float:
    """Returns the user plus system CPU time the process and its children have used so far."""
    try:
        root = psutil.Process(process.popen.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for member in tree:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def own_cpu_seconds() -> float:
    """Returns the CPU time of this process (the load clients) so far."""
    times = os.times()
    return times.user + times.system


def cpu_ms_per_call(before: dict[str, float], after: dict[str, float], calls: int) -> str:
    """Returns each process's CPU milliseconds per call between two readings."""
    return ", ".join(
        f"{name} {(after[name] - before[name]) * 1000 / max(calls, 1):.1f}" for name in before
    )


def logged_exceptions(log: str) -> Counter[str]:
    """Returns the final lines of the tracebacks in a log (`pkg.SomeError: message`), counted."""
    return Counter(line for line in log.splitlines() if EXCEPTION_LINE.match(line))


def row(name: str, clients: int, result: Result, errors: int) -> str:
    """Returns one table row."""
    calls = len(result.latencies_s)
    p50 = result.percentile_ms(50) if calls else float("nan")
    p99 = result.percentile_ms(99) if calls else float("nan")
    return (
        f"{name:<36} {clients:>7} {calls:>7} {errors:>6} {result.throughput:>9.1f} "
        f"{p50:>9.1f} {p99:>9.1f}"
    )


def main_run(
    clients: int, seconds: float, gateway_seconds: float, database_choice: str, web_workers: int
) -> int:
    """Starts the stack, runs both measurements, prints and records them; 0 unless it crashed."""
    started = time.perf_counter()
    images = phone_jpegs()
    scratch = Path(tempfile.mkdtemp(prefix="medimg-web-load-"))
    (scratch / "static").mkdir()
    processes: list[Process] = []
    database: WebDatabase | None = None
    try:
        skin, gateway = start_stack(scratch / "gateway-state", WORKLOADS["skin"])
        processes += [gateway, skin]
        database = start_database(database_choice, scratch)
        env = {**web_env(database, gateway, scratch), "WEB_WORKERS": str(web_workers)}
        manage(env, "migrate", "--no-input", "-v", "0")
        token = manage(env, "shell", "-c", CREATE_TOKEN).strip().splitlines()[-1]
        web = start_web(env)
        processes.insert(0, web)
        warm_web(web.port, token, images)
        print(f"web: {clients} clients uploading for {seconds:.0f} s ...", file=sys.stderr)
        cpu_before = {"clients": own_cpu_seconds(), **{p.name: cpu_seconds(p) for p in processes}}
        on_web = run_web_clients(web.port, token, images, clients, seconds)
        cpu_web = {"clients": own_cpu_seconds(), **{p.name: cpu_seconds(p) for p in processes}}
        print(f"gateway-direct: {clients} workers for {gateway_seconds:.0f} s ...", file=sys.stderr)
        direct = asyncio.run(run_gateway_direct(gateway.address, images, clients, gateway_seconds))
        cpu_direct = {"clients": own_cpu_seconds(), **{p.name: cpu_seconds(p) for p in processes}}
        web_log = web.log()
    finally:
        for process in processes:
            process.terminate()
        if database is not None:
            database.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"skin model, {len(images)} distinct 600x450 JPEGs (~{len(images[0]) // 1024} KiB); "
        f"web tier: uvicorn x {web_workers} (WEB_WORKERS), {database.name}"
    )
    header = f"{'clients':>7} {'calls':>7} {'errors':>6} {'calls/s':>9} {'p50 ms':>9} {'p99 ms':>9}"
    print(f"{'':<36} {header}")
    print(row("(w) web API POST /api/v1/diagnoses/", clients, on_web.result, on_web.error_count))
    print(row("(g) gateway-direct Diagnose (gRPC)", clients, direct, 0))
    print(f"{os.cpu_count()} CPU cores shared by the clients and every server process")
    web_calls = len(on_web.result.latencies_s) + on_web.error_count
    print(f"CPU ms per call, (w): {cpu_ms_per_call(cpu_before, cpu_web, web_calls)}")
    direct_calls = len(direct.latencies_s)
    print(f"CPU ms per call, (g): {cpu_ms_per_call(cpu_web, cpu_direct, direct_calls)}")
    if on_web.error_count:
        print(f"error kinds: {dict(on_web.errors)}")
        for sample in on_web.samples:
            print(f"  {sample}")
        print("exceptions in the web log:")
        for line, count in logged_exceptions(web_log).most_common(ERROR_SAMPLES):
            print(f"  {count} x {line}")
    report.finish("web", ratios(clients, on_web, direct), started, notes(on_web, web_workers))
    return 0


def ratios(clients: int, on_web: WebOutcome, direct: Result) -> list[report.Ratio]:
    """Returns the rows: web API / gateway-direct calls/s, and the uploads that failed."""
    web = report.Figure(f"web API {clients} clients", on_web.result.throughput, "calls/s")
    return [
        report.ratio(
            f"web API / gateway-direct calls/s, {clients} clients",
            web,
            report.Figure(f"gateway-direct {clients} workers", direct.throughput, "calls/s"),
            ">=",
            TARGET_RATIO,
        ),
        report.Ratio(
            f"web API upload errors, {clients} clients",
            float(on_web.error_count),
            TARGET_ERRORS,
            "<=",
            (report.Figure("uploads answered 201", len(on_web.result.latencies_s), "calls"),),
            unit="errors",
        ),
    ]


def notes(on_web: WebOutcome, web_workers: int) -> dict[str, object]:
    """Returns what results.json keeps beside the rows: error kinds, the web tier's workers."""
    return {"web_workers": web_workers, "error_kinds": dict(on_web.errors)}


def main() -> None:
    """Parses the options and runs the load test."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent API clients")
    quick = report.quick()
    parser.add_argument(
        "--seconds",
        type=float,
        default=QUICK_SECONDS if quick else FULL_SECONDS,
        help=f"length of the web run (default {FULL_SECONDS:.0f}, {QUICK_SECONDS:.0f} quick)",
    )
    parser.add_argument(
        "--gateway-seconds",
        type=float,
        default=None,
        help="gateway-direct run (default: 30 s, 8 s quick, at most --seconds)",
    )
    parser.add_argument(
        "--database",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="the web tier's database",
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="uvicorn processes serving the web tier (WEB_WORKERS; default: one per core)",
    )
    args = parser.parse_args()
    default_gateway = QUICK_GATEWAY_SECONDS if quick else FULL_GATEWAY_SECONDS
    gateway_seconds = args.gateway_seconds or min(args.seconds, default_gateway)
    sys.exit(main_run(args.clients, args.seconds, gateway_seconds, args.database, args.web_workers))


if __name__ == "__main__":
    main()
