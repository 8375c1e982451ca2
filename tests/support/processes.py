"""Starts medimg components as real processes on loopback ports for cross-service tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Returns a loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Process:
    """A component running as a child process, with its output kept in a file."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """Returns host:port of the component's gRPC server."""
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        """Returns what the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        """Sends SIGTERM and returns the exit code; kills it if it does not stop in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        """Kills the process at once, as a crash would."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def start(
    name: str,
    module: str,
    prefix: str,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Process:
    """Starts `python -m module` with `{prefix}PORT` set to `port`, or to a free port.

    A port chosen in advance is for a component that must keep its address across a
    restart, or whose address another must be told before it starts.
    """
    port = free_port() if port is None else port
    child_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
        f"{prefix}PORT": str(port),
    }
    descriptor, log_name = tempfile.mkstemp(prefix=f"medimg-{name}-", suffix=".log")
    with open(descriptor, "wb") as log_file:
        popen = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=child_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Process(name, port, popen, Path(log_name), child_env)


def start_trainer(*, port: int, data_dir: Path) -> Process:
    """Starts trainer_service on `port` with its data in `data_dir`.

    The trainer calls no gateway: gateways ask it for its published models.
    """
    return start(
        "trainer",
        "trainer_service",
        "TRAINER_",
        port=port,
        env={"TRAINER_DATA_DIR": str(data_dir)},
    )


def start_mri(spool: Path, *, timeout: float) -> Process:
    """Starts mri_service with its shipped models, spooling into spool; waits until SERVING."""
    mri = start("mri", "mri_service", "MRI_", env={"MRI_SPOOL_DIR": str(spool)})
    wait_until_serving(mri, timeout=timeout)
    return mri


def start_gateway(routes: str, state_dir: Path, **env: str) -> Process:
    """Starts the gateway with GATEWAY_ROUTES=routes and its state in state_dir; waits for it."""
    gateway = start(
        "gateway",
        "gateway",
        "GATEWAY_",
        env={"GATEWAY_ROUTES": routes, "GATEWAY_STATE_DIR": str(state_dir), **env},
    )
    wait_until_serving(gateway)
    return gateway


def wait_until_serving(process: Process, timeout: float = 30.0) -> None:
    """Waits until the standard health check reports SERVING; fails with the process log."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(process.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited early:\n{process.log()}")
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{process.name} not SERVING after {timeout}s:\n{process.log()}")
