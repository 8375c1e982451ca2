"""A web process killed mid-job: another `python -m web` takes its series job over in seconds."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ROOT, free_port
from web.tests.test_series_services import phantom_zip_bytes

pytestmark = pytest.mark.slow

# Two loaded cores: a process start (Django, migrations checked) takes several seconds.
START_LIMIT_S = 60.0
# From the kill: the lease (3 s) expires, the new process starts, sweeps and runs the job.
TAKEOVER_LIMIT_S = 40.0  # under the old rule (a 60 s stale heartbeat) it failed

CREATE_JOB = """
from pathlib import Path
from web.accounts.models import User
from web.series import services
user = User.objects.create_user(
    email="alice@example.com", name="Alice", password="a long passphrase"
)
with Path({zip!r}).open("rb") as upload:
    print(services.series_job_create(user=user, upload=upload).pk.hex)
"""


@contextmanager
def stalling_listener() -> Iterator[str]:
    """A TCP server that accepts and never answers: a gateway whose host hangs mid-call."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        server.close()


def job_row(db: Path, job_hex: str) -> dict[str, Any]:
    with sqlite3.connect(db, timeout=10) as connection:
        connection.row_factory = sqlite3.Row
        row = connection.execute(
            "SELECT status, worker, attempts, error_code FROM series_seriesjob WHERE id = ?",
            (job_hex,),
        ).fetchone()
    return dict(row)


def wait_row(db: Path, job_hex: str, until: Any, timeout_s: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        row = job_row(db, job_hex)
        if until(row):
            return row
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s: {row}"
        time.sleep(0.1)


def test_a_killed_web_process_has_its_running_job_taken_over_by_another_within_seconds(
    tmp_path: Path, series_gateway_address: str
) -> None:
    db, media, upload = tmp_path / "db.sqlite3", tmp_path / "media", tmp_path / "case.zip"
    upload.write_bytes(phantom_zip_bytes())
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WEB_DEBUG": "true",
        "WEB_WORKERS": "1",
        "WEB_HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{db}",
        "WEB_MEDIA_ROOT": str(media),
        "WEB_SERIES_LEASE_SECONDS": "3",
        "WEB_SERIES_HEARTBEAT_SECONDS": "1",
        "WEB_SERIES_SWEEP_SECONDS": "1",
        "WEB_SERIES_RETRIES": "0",
        "GATEWAY_ADDR": series_gateway_address,
    }
    manage = [sys.executable, "web/manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    created = subprocess.run(
        [*manage, "shell", "-c", CREATE_JOB.format(zip=str(upload))],
        cwd=ROOT,
        env={**env, "WEB_SERIES_WORKER": "off"},
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    job_hex = created.stdout.strip().splitlines()[-1]
    assert job_row(db, job_hex)["status"] == "queued"

    def serve(gateway: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "web"],
            cwd=ROOT,
            env={
                **env,
                "WEB_SERIES_WORKER": "thread",
                "WEB_PORT": str(free_port()),
                "GATEWAY_ADDR": gateway,
            },
            start_new_session=True,  # its own group: killed whole, like a crashed pod
        )

    processes: list[subprocess.Popen[bytes]] = []
    try:
        with stalling_listener() as hanging:
            first = serve(hanging)
            processes.append(first)
            running = wait_row(
                db, job_hex, lambda r: r["status"] == "running", START_LIMIT_S, "not claimed"
            )
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
            killed = time.monotonic()
        second = serve(series_gateway_address)
        processes.append(second)
        done = wait_row(
            db, job_hex, lambda r: r["status"] in ("done", "failed"), TAKEOVER_LIMIT_S, "not done"
        )
        took_s = time.monotonic() - killed
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    assert done["status"] == "done", done
    assert done["attempts"] == 2 and done["worker"] != running["worker"]
    assert took_s < TAKEOVER_LIMIT_S
