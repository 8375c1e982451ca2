"""A throwaway PostgreSQL server for the tests: its own folder, loopback, a free port."""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Where Debian and the PostgreSQL images put the server binaries when they are not on PATH.
_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/pgsql/bin")
# Durability is not wanted from a database that lives for one test run.
_FAST_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says what is missing."""


_INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install_postgres.sh"


def _binary(name: str) -> str:
    """Returns the path of a PostgreSQL binary, installing PostgreSQL 15 first if none is here."""
    found = _find_binary(name)
    if found is None:
        _install()
        found = _find_binary(name)
    if found is None:
        raise PostgresUnavailable(f"{name} not found: install PostgreSQL 15 (initdb, pg_ctl)")
    return found


def _find_binary(name: str) -> str | None:
    # PostgreSQL's own folder first: /usr/bin may hold Debian's version-switching wrappers.
    for folder in _BIN_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


@functools.cache
def _install() -> None:
    """Runs the project's install script once; PostgresUnavailable with its output if it fails."""
    done = subprocess.run(
        [str(_INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise PostgresUnavailable(
            f"{_INSTALL_SCRIPT.name} could not install PostgreSQL 15 (exit {done.returncode}): "
            f"{(done.stdout + done.stderr).strip()[-2000:]}"
        )


def free_port() -> int:
    """Returns a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One running server; `url` is a DATABASE_URL for its database `medimg`."""

    root: Path
    port: int
    _as_postgres: bool

    @property
    def url(self) -> str:
        """Returns the database URL (trust authentication on loopback)."""
        return f"postgres://postgres@127.0.0.1:{self.port}/medimg"

    @classmethod
    def start(cls, *, attempts: int = 3) -> PostgresServer:
        """Initialises a cluster in a temporary folder and starts it; raises PostgresUnavailable.

        As root, PostgreSQL refuses to run: the folder then belongs to the `postgres`
        user and every command runs as that user.
        """
        as_postgres = os.geteuid() == 0
        root = Path(tempfile.mkdtemp(prefix="medimg-pg-"))
        server = cls(root=root, port=0, _as_postgres=as_postgres)
        try:
            if as_postgres:
                try:
                    account = pwd.getpwnam("postgres")
                except KeyError:
                    raise PostgresUnavailable("running as root needs a `postgres` user") from None
                os.chown(root, account.pw_uid, account.pw_gid)
            server._run(
                _binary("initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
            server._start(attempts)
            server._run(
                _binary("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "medimg",
            )
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        """Stops the server at once and removes its folder; safe to call twice."""
        if (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError, PostgresUnavailable):
                self._run(
                    _binary("pg_ctl"),
                    "-D",
                    str(self.root / "data"),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                )
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, down_s: float) -> None:
        """Stops the server as an operator's restart would, waits down_s, starts it again.

        The same port and data: clients see connections refused, then the same database.
        """
        self._run(_binary("pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        time.sleep(down_s)
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} {_FAST_OPTIONS}"
        self._run(
            _binary("pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "30",
            "start",
        )

    def _start(self, attempts: int) -> None:
        # The free port may be taken between the probe and the bind: try a few.
        for attempt in range(attempts):
            self.port = free_port()
            try:
                self._pg_ctl_start()
                return
            except subprocess.CalledProcessError:
                if attempt == attempts - 1:
                    log = self.root / "server.log"
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise PostgresUnavailable(f"PostgreSQL did not start:\n{tail}") from None

    def _run(self, *argv: str) -> None:
        command = list(argv)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.root, timeout=60)
