"""The plug-in path end to end: scaffold `retina` into a copy of the repository and use it.

In a temporary copy (the files git tracks or would track, no .venv, no .git), with no
hand edit anywhere: `medimg new-service retina` writes the package and its deployment
entries; the package's demo model is written; `medimg up --only gateway,retina` finds
the plug-in through its component.json and routes the gateway to it; a PNG is diagnosed
through the gateway; ruff and mypy pass on the new package; its generated
docker/retina.Dockerfile passes every image rule; both overlays render with the new service
and pass every policy rule. The generated tests themselves run in
medimg_cli/tests/test_scaffold.py, on the templates rendered for each framework.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc
from PIL import Image

from tests.k8s import policy, render
from tests.support import dockerfile

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("normal", "diabetic_retinopathy", "glaucoma")
# Default ports of the two components `up` starts here: moved together by --port-offset.
GATEWAY_PORT, RETINA_PORT = 50051, 50070


def copy_repository(target: Path) -> Path:
    """Copies the files git tracks, or would track, into target; returns target."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.is_file():  # deleted in the work tree, still in the index
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(source.read_bytes())
    return target


def run(copy: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs this venv's python with argv in the copy; fails the test with its output."""
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=copy,
        env=environment(copy),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def environment(copy: Path, **extra: str) -> dict[str, str]:
    """Returns an environment in which the copy's packages win over the installed ones.

    Django's settings module is left out: a web test of this session may have set it
    (Celery's app sets it on import), and the copy's pytest must not load Django.
    """
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return {**inherited, "PYTHONPATH": str(copy), "NO_COLOR": "1", **extra}


def port_offset() -> int:
    """Returns an offset that puts both default ports on ports free a moment ago."""
    for offset in np.random.default_rng().integers(1000, 14000, 50).tolist():
        if all(_free(port + offset) for port in (GATEWAY_PORT, RETINA_PORT)):
            return int(offset)
    pytest.fail("no free pair of ports for the gateway and retina")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_serving(address: str, up: subprocess.Popen[str], timeout_s: float) -> None:
    """Waits for grpc.health.v1 SERVING at address while `up` keeps running."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if up.poll() is not None:
                output, _ = up.communicate()
                pytest.fail(f"medimg up exited early:\n{output}")
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    pytest.fail(f"{address} was not SERVING within {timeout_s}s")


def fundus_png() -> bytes:
    """Returns a PNG that looks vaguely like a retina photo: an orange disc on black."""
    yy, xx = np.mgrid[0:160, 0:160]
    disc = (yy - 80) ** 2 + (xx - 80) ** 2 < 70**2
    pixels = np.where(disc[..., None], [200, 90, 40], [5, 5, 5]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return copy_repository(tmp_path / "medimg")


def scaffold(copy: Path, framework: str) -> None:
    """Runs `medimg new-service retina` in the copy, then writes the demo model."""
    labels = ",".join(LABELS)
    command = ("new-service", "retina", "--labels", labels, "--framework", framework)
    run(copy, "-m", "medimg_cli", *command, "--root", str(copy))
    run(copy, "-m", "retina_service.demo_model")


def check_package(copy: Path) -> None:
    """Runs ruff and mypy on retina_service in the copy."""
    run(copy, "-m", "ruff", "check", "retina_service")
    run(copy, "-m", "ruff", "format", "--check", "retina_service")
    run(copy, "-m", "mypy", "retina_service", timeout=240)


def check_image(copy: Path) -> None:
    """Checks that docker/retina.Dockerfile was written and passes the image rules in copy."""
    assert (copy / "docker" / "retina.Dockerfile").is_file()
    (retina,) = [p for p in dockerfile.plugin_dockerfiles(copy) if p.name == "retina"]
    assert dockerfile.plugin_image_violations(copy, retina) == []


@pytest.fixture
def stack(copy: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Scaffolds retina (torch) with its demo model, runs `medimg up`; yields it and its offset."""
    scaffold(copy, "torch")
    offset = port_offset()
    command = ("up", "--only", "gateway,retina", "--port-offset", str(offset))
    up = subprocess.Popen(
        [sys.executable, "-m", "medimg_cli", *command],
        cwd=copy,
        env=environment(copy, GATEWAY_GRACE_SECONDS="1", RETINA_GRACE_SECONDS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield up, offset
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                up.kill()
                up.communicate()


def test_a_scaffolded_retina_service_is_diagnosed_through_the_gateway_and_deploys(
    copy: Path, stack: tuple[subprocess.Popen[str], int]
) -> None:
    up, offset = stack
    gateway = f"127.0.0.1:{GATEWAY_PORT + offset}"
    wait_until_serving(f"127.0.0.1:{RETINA_PORT + offset}", up, timeout_s=60)
    wait_until_serving(gateway, up, timeout_s=30)

    with grpc.insecure_channel(gateway) as channel:
        response = pb_grpc.DiagnosisServiceStub(channel).Diagnose(
            pb.DiagnoseRequest(disease="retina", image=fundus_png()), timeout=30
        )
    assert sorted(score.label for score in response.scores) == sorted(LABELS)
    assert sum(score.score for score in response.scores) == pytest.approx(1.0, abs=1e-5)
    assert response.top_label == response.scores[0].label
    assert (response.disease, response.model_name, response.demo_model) == (
        "retina",
        "retina-demo",
        True,
    )
    up.send_signal(signal.SIGINT)
    output, _ = up.communicate(timeout=30)
    assert up.returncode == 0, output
    assert "starting retina, gateway" in output

    check_package(copy)
    check_image(copy)

    for overlay in render.OVERLAYS:
        objects = render.render_overlay(overlay, root=copy / "k8s")
        assert policy.check(objects, policy.rules_for(overlay)) == [], overlay
        assert render.validate(objects) == [], overlay
        deployment = render.find(objects, "Deployment", "retina")
        assert render.label(deployment, "medimg.io/role") == "service"
        assert routes(objects)["retina"] == {"kind": "image", "addresses": ["retina:50070"]}


def routes(objects: list[render.Manifest]) -> Mapping[str, Mapping[str, object]]:
    """Returns the gateway registry's routes by disease, from its rendered ConfigMap."""
    (registry,) = [
        obj
        for obj in objects
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("gateway-registry")
    ]
    models = yaml.safe_load(registry["data"]["registry.yaml"])["models"]
    return {model.pop("disease"): model for model in models}


def test_a_scaffolded_keras_service_passes_ruff_and_mypy(copy: Path) -> None:
    scaffold(copy, "keras")
    assert (copy / "retina_service/models/retina-demo/1/saved_model.pb").is_file()
    check_package(copy)
    check_image(copy)
