"""Starts a real TorchServe on loopback for tests and benchmarks, with token authorization on.

`running_torchserve(model_store, models)` is a context manager (usable from a pytest
fixture or a benchmark script): it writes a config.properties that binds every
address and port (REST, metrics, gRPC inference and management) to 127.0.0.1 on free
ports, keeps logs, the pid file, worker sockets, the unpacked archives and the key
file inside one temporary directory, starts the `torchserve` launcher of this venv,
reads the inference and management keys TorchServe writes to `key_file.json`, and
waits until every model's workers are READY (its `/ping` answers Healthy earlier).
On exit it stops TorchServe and checks that none of its processes (the launcher, the
Java frontend, the Python workers) is left running.

Also here: a seeded MRI model set and synthetic slices, for tests that need a model
set when the trained demo set is not shipped yet.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from mri_service.domain import MODEL_CHANNELS, MODEL_NAMES
from mri_service.model_card import ModelCard, load_model_card, weights_file
from mri_service.settings import DEFAULT_MODEL_DIR, TorchServeSettings
from tests.support.processes import free_port

TORCHSERVE = Path(sys.executable).parent / "torchserve"
PORT_NAMES = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
# TorchServe's JVM would otherwise size its heap from the machine's memory.
JVM_ARGS = "-Xmx512m -XX:+UseSerialGC"
READY = "READY"


@dataclass
class TorchServe:
    """A running TorchServe and what a client needs to call it."""

    root: Path  # the temporary directory holding everything it writes
    popen: subprocess.Popen[bytes]  # the `torchserve --foreground` launcher
    ports: dict[str, int]
    inference_key: str
    management_key: str
    models: tuple[str, ...]
    start_to_ready_s: float = 0.0
    _processes: list[psutil.Process] = field(default_factory=list)

    @property
    def grpc_address(self) -> str:
        """Returns host:port of the gRPC inference API."""
        return f"127.0.0.1:{self.ports['grpc_inference']}"

    @property
    def management_url(self) -> str:
        """Returns the base URL of the REST management API."""
        return f"http://127.0.0.1:{self.ports['management']}"

    def settings(
        self, *, inference_key: str | None = "", timeout_s: float = 10.0, model_prefix: str = "mri-"
    ) -> TorchServeSettings:
        """Returns backend settings for this server; inference_key "" means the right key."""
        key = self.inference_key if inference_key == "" else inference_key
        return TorchServeSettings(self.grpc_address, key, model_prefix, timeout_s)

    def log(self) -> str:
        """Returns the launcher's output and the end of TorchServe's own log."""
        parts = []
        for path in (self.root / "torchserve.out", self.root / "logs" / "ts_log.log"):
            if path.is_file():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-8000:]}")
        return "\n".join(parts)

    def describe(self, model: str) -> list[dict[str, Any]]:
        """Returns TorchServe's description of a registered model (management API)."""
        request = urllib.request.Request(
            f"{self.management_url}/models/{model}",
            headers={"Authorization": f"Bearer {self.management_key}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer: list[dict[str, Any]] = json.loads(response.read())
        return answer

    def ready(self, model: str) -> bool:
        """Returns True when every worker of the model is READY."""
        try:
            workers = [w for entry in self.describe(model) for w in entry.get("workers", [])]
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return bool(workers) and all(w.get("status") == READY for w in workers)

    def stop(self, timeout: float = 20.0) -> None:
        """Stops TorchServe as `torchserve --stop` does, then kills what is left.

        Raises:
            RuntimeError: one of its processes survived.
        """
        self._remember_processes()
        java = [p for p in self._processes if _is_java(p)]
        for process in java:  # the launcher waits for Java and reaps it
            _signal(process, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        _, alive = psutil.wait_procs(self._processes, timeout=5)
        for process in alive:
            _signal(process, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        _, survivors = psutil.wait_procs(alive, timeout=5)
        running = [p for p in survivors if _running(p)]
        if running:
            raise RuntimeError(f"TorchServe left processes running: {[p.pid for p in running]}")

    def _remember_processes(self) -> None:
        try:
            children = psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        known = {p.pid for p in self._processes}
        self._processes += [p for p in children if p.pid not in known]


def _is_java(process: psutil.Process) -> bool:
    try:
        return "org.pytorch.serve.ModelServer" in process.cmdline()
    except psutil.Error:
        return False


def _signal(process: psutil.Process, number: int) -> None:
    with suppress(psutil.NoSuchProcess):
        process.send_signal(number)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def write_config(
    root: Path,
    model_store: Path,
    models: Iterable[str],
    *,
    workers: int,
    job_queue_size: int,
    properties: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Writes root/config.properties binding everything to loopback; returns its ports.

    `properties` adds or overrides TorchServe settings (`max_request_size`, ...).
    """
    ports = {name: free_port() for name in PORT_NAMES}
    lines = [
        f"inference_address=http://127.0.0.1:{ports['inference']}",
        f"management_address=http://127.0.0.1:{ports['management']}",
        f"metrics_address=http://127.0.0.1:{ports['metrics']}",
        "grpc_inference_address=127.0.0.1",
        f"grpc_inference_port={ports['grpc_inference']}",
        "grpc_management_address=127.0.0.1",
        f"grpc_management_port={ports['grpc_management']}",
        f"model_store={model_store}",
        "load_models=" + ",".join(f"{name}={name}.mar" for name in models),
        f"default_workers_per_model={workers}",
        f"job_queue_size={job_queue_size}",
        # The system metrics collector runs a Python process every minute: not wanted here.
        "disable_system_metrics=true",
        f"vmargs={JVM_ARGS}",
        *(f"{key}={value}" for key, value in (properties or {}).items()),
    ]
    (root / "config.properties").write_text("\n".join(lines) + "\n")
    return ports


def _environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TS_")}
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    # TMPDIR moves the launcher's pid file (one per machine otherwise, which makes a
    # second TorchServe refuse to start); TEMP becomes Java's java.io.tmpdir, where the
    # archives are unpacked and the worker sockets live; LOG_LOCATION and
    # METRICS_LOCATION are read by TorchServe's log4j2 configuration.
    env.update(
        TMPDIR=str(tmp),
        TEMP=str(tmp),
        LOG_LOCATION=str(root / "logs"),
        METRICS_LOCATION=str(root / "logs"),
    )
    return env


def _read_keys(root: Path) -> tuple[str, str] | None:
    try:
        keys = json.loads((root / "key_file.json").read_text())
        return str(keys["inference"]["key"]), str(keys["management"]["key"])
    except (OSError, ValueError, KeyError):  # not written yet, or half written
        return None


def start_torchserve(
    root: Path,
    model_store: Path,
    models: Iterable[str],
    *,
    workers: int = 1,
    job_queue_size: int = 100,
    properties: Mapping[str, str] | None = None,
    timeout_s: float = 90.0,
) -> TorchServe:
    """Starts TorchServe in root serving `<name>.mar` of model_store; returns once all READY.

    Raises:
        RuntimeError: TorchServe exited early.
        TimeoutError: a model was not READY within timeout_s (TorchServe is stopped).
    """
    names = tuple(models)
    ports = write_config(
        root,
        model_store,
        names,
        workers=workers,
        job_queue_size=job_queue_size,
        properties=properties,
    )
    command = [str(TORCHSERVE), "--start", "--foreground", "--ncs"]
    command += ["--model-store", str(model_store), "--ts-config", str(root / "config.properties")]
    started = time.monotonic()
    with open(root / "torchserve.out", "wb") as out:
        popen = subprocess.Popen(
            command,
            cwd=root,  # TorchServe writes key_file.json into its working directory
            env=_environment(root),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so that Ctrl-C in a terminal does not reach it first
        )
    server = TorchServe(root, popen, ports, "", "", names)
    try:
        _wait_until_ready(server, started + timeout_s)
    except BaseException:
        server.stop()
        raise
    server.start_to_ready_s = time.monotonic() - started
    server._remember_processes()
    return server


def _wait_until_ready(server: TorchServe, deadline: float) -> None:
    pending = list(server.models)
    while time.monotonic() < deadline:
        if server.popen.poll() is not None:
            raise RuntimeError(f"TorchServe exited early:\n{server.log()}")
        server._remember_processes()
        if not server.management_key:
            keys = _read_keys(server.root)
            if keys is not None:
                server.inference_key, server.management_key = keys
        if server.management_key:
            pending = [name for name in pending if not server.ready(name)]
            if not pending:
                return
        time.sleep(0.1)
    raise TimeoutError(f"TorchServe models {pending} not READY in time:\n{server.log()}")


@contextmanager
def running_torchserve(
    model_store: Path,
    models: Iterable[str],
    *,
    workers: int = 1,
    job_queue_size: int = 100,
    properties: Mapping[str, str] | None = None,
    timeout_s: float = 90.0,
) -> Iterator[TorchServe]:
    """Runs TorchServe serving `<name>.mar` of model_store for the with block, then stops it."""
    # A short path: worker sockets live under it and a Unix socket path is limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="ts-", dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        server = start_torchserve(
            root,
            model_store,
            models,
            workers=workers,
            job_queue_size=job_queue_size,
            properties=properties,
            timeout_s=timeout_s,
        )
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- a model set for tests ------------------------------------------------------------


def synthetic_slices(count: int, channels: int, size: int, *, seed: int) -> np.ndarray:
    """Returns float32 (count, channels, size, size) in [0, 255]: ramps, blobs and noise.

    Each plane is scaled to [0, 255] on its own, as `domain.preprocess_slice` does.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((count, channels, size, size), np.float32)
    for index in range(count):
        ramp = rng.uniform(0.2, 1.0) * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
        for channel in range(channels):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            radius = rng.uniform(0.05, 0.2)
            blob = rng.uniform(0, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
            plane = ramp + blob + rng.normal(0, 0.05, (size, size))
            out[index, channel] = (plane - plane.min()) * (255.0 / np.ptp(plane))
    return out


def write_seeded_model_set(
    out_dir: Path, *, seed: int = 0, input_size: int = 64, version: int = 3
) -> Path:
    """Writes a model set of untrained but input-sensitive weights; returns out_dir.

    Fresh weights answer almost the same probability for every slice, so the batch
    norm statistics are taken from synthetic slices and the last layer is scaled so
    that logits spread around 0: both decisions occur and few sit near the threshold.
    """
    import torch

    from mri_service.model import DEMO_WIDTH, SliceClassifier

    torch.manual_seed(seed)
    for offset, name in enumerate(MODEL_NAMES):
        channels = MODEL_CHANNELS[name]
        model = SliceClassifier(channels, width=DEMO_WIDTH)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a plain average over the calibration batch
        calibration = torch.from_numpy(
            synthetic_slices(64, channels, input_size, seed=seed + 100 + offset)
        )
        model.train()
        with torch.no_grad():
            model(calibration)
            model.eval()
            logits = model(calibration)
            last = model.head[-1]
            assert isinstance(last, torch.nn.Linear)
            scale = 2.0 / float(logits.std())
            last.weight *= scale
            last.bias.copy_(last.bias * scale - float(logits.median()) * scale)
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out_dir / weights_file(name))
    ModelCard(
        name="mri-seeded",
        version=version,
        width=DEMO_WIDTH,
        input_size=input_size,
        threshold=0.5,
        data=f"untrained weights from seed {seed}, for tests",
        demo_model=True,
        trained_on="2025-01-01",
    ).save(out_dir)
    return out_dir


def shipped_model_set() -> Path | None:
    """Returns the shipped demo model set when this checkout has a usable one."""
    try:
        load_model_card(DEFAULT_MODEL_DIR)
    except (OSError, ValueError):
        return None
    return DEFAULT_MODEL_DIR
