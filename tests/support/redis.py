"""A throwaway redis-server on a loopback port, which a test can kill and start again."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import ROOT, free_port

INSTALL_SCRIPT = ROOT / "scripts" / "install_redis.sh"
START_TIMEOUT_S = 10.0


def redis_binaries() -> tuple[str, str]:
    """Returns redis-server and redis-cli, installing them with the project script if missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server and cli:
        return server, cli
    done = subprocess.run(
        [str(INSTALL_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if done.returncode != 0 or not (server and cli):
        pytest.fail(
            f"redis-server is needed and {INSTALL_SCRIPT.name} could not install it "
            f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}",
            pytrace=False,
        )
    return server, cli


class RedisServer:
    """redis-server as a child process, without persistence, as production may run it.

    No RDB snapshot, no AOF: a server killed and started again comes back empty, which is
    what a restart of such a deployment does to queued Celery messages and channel groups.
    `start()` after `kill()` or `stop()` serves again on the same port.
    """

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        self.folder = folder
        self.port = free_port() if port is None else port
        self.server, self.cli = redis_binaries()
        self.log_path = folder / "redis.log"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Returns redis://127.0.0.1:PORT/0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Tells whether the server process is alive."""
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        """Starts the server on its port and waits until it answers PING."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                [
                    *(self.server, "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.ping():
            if not self.running or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def ping(self) -> bool:
        """Tells whether the server answers PING now."""
        answer = subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(self.port), "ping"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return answer.stdout.strip() == "PONG"

    def kill(self) -> None:
        """Kills the server at once (SIGKILL), as a crash or an evicted pod would."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(10)

    def stop(self) -> None:
        """Stops the server (SIGTERM, no save); kills it if it does not stop within 10 s."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, *, down_s: float) -> float:
        """Kills the server, keeps it down `down_s`, starts it again; returns the seconds down."""
        self.kill()
        down_at = time.monotonic()
        time.sleep(down_s)
        self.start()
        return time.monotonic() - down_at

    def log(self) -> str:
        """Returns what the server logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    """Runs a RedisServer in `folder` until the block ends; leaves no process behind."""
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
