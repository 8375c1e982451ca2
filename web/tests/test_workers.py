"""`python -m web` with WEB_WORKERS: several uvicorn processes sharing one listening socket."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.processes import ROOT, free_port

pytestmark = pytest.mark.slow


def _healthy(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WEB_DEBUG": "true",
        "WEB_WORKERS": "2",
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "WEB_MEDIA_ROOT": str(tmp_path / "media"),
        "WEB_SERIES_WORKER": "off",
    }
    supervisor = subprocess.Popen([sys.executable, "-m", "web"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            assert supervisor.poll() is None, "the supervisor exited before serving"
            assert time.monotonic() < deadline, "no answer on /healthz within 60 s"
            time.sleep(0.2)
        yield supervisor, port
    finally:
        for child in psutil.Process(supervisor.pid).children() if supervisor.poll() is None else []:
            child.kill()
        supervisor.kill()
        supervisor.wait()


def _listeners(supervisor: subprocess.Popen[bytes], port: int) -> list[psutil.Process]:
    """Returns the supervisor's children that hold a socket listening on the port."""
    return [
        child
        for child in psutil.Process(supervisor.pid).children()
        if any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == port
            for c in child.net_connections("tcp")
        )
    ]


def test_two_workers_listen_on_the_one_port_and_sigterm_stops_them_all(
    two_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    supervisor, port = two_workers
    workers = _listeners(supervisor, port)
    assert len(workers) == 2
    assert all(_healthy(port) for _ in range(20))
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert not any(worker.is_running() and worker.status() != "zombie" for worker in workers)


def test_a_worker_that_dies_is_replaced(
    two_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    supervisor, port = two_workers
    first, second = _listeners(supervisor, port)
    first.kill()
    deadline = time.monotonic() + 30
    while True:
        pids = {w.pid for w in _listeners(supervisor, port) if w.status() != psutil.STATUS_ZOMBIE}
        if len(pids) == 2 and first.pid not in pids:
            break
        assert time.monotonic() < deadline, "the dead worker was not replaced within 30 s"
        time.sleep(0.2)
    assert second.pid in pids
    assert supervisor.poll() is None and _healthy(port)
