"""The DICOM receiver as a component: `medimg up` starts it after the gateway, `serve` runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dicom_receiver.tests.studies import echo, wait_for
from medimg_cli.components import BY_NAME, COMPONENTS, DICOM, GATEWAY
from medimg_cli.ports import find_free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    # The checkout on the import path: a package added after `pip install -e .` is not in
    # the editable finder's map until the venv is refreshed.
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **extra}


def _answers(port: int, process: subprocess.Popen[str]) -> bool:
    assert process.poll() is None, "the command exited before the receiver listened"
    try:
        return echo(port) == 0
    except Exception:
        return False


def test_dicom_is_a_gateway_client_started_after_the_gateway() -> None:
    assert BY_NAME["dicom"] is DICOM
    assert (DICOM.module, DICOM.env_prefix, DICOM.default_port, DICOM.kind) == (
        "dicom_receiver",
        "DICOM_",
        11112,
        None,
    )
    assert COMPONENTS.index(DICOM) == COMPONENTS.index(GATEWAY) + 1
    assert DICOM.is_installed()


@pytest.mark.slow
def test_up_starts_the_receiver_after_the_gateway_and_stops_it_on_ctrl_c(
    tmp_path: Path,
) -> None:
    gateway_port, dicom_port = find_free_port("127.0.0.1"), find_free_port("127.0.0.1")
    env = _env(DICOM_PORT=str(dicom_port), GATEWAY_GRACE_SECONDS="1", DICOM_GRACE_SECONDS="1")
    env.pop("DICOM_SPOOL_DIR", None)
    command = ["up", "--only", "gateway,dicom", "--gateway-port", str(gateway_port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "medimg_cli", *command],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: _answers(dicom_port, process), timeout_s=30, what="the C-ECHO")
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "medimg  | starting gateway, dicom" in output
    assert f"DICOM receiver MEDIMG listening on 127.0.0.1:{dicom_port}" in output
    assert f"through 127.0.0.1:{gateway_port}; results go to nowhere" in output
    assert (tmp_path / "var" / "dicom" / "incoming").is_dir()
    assert output.rstrip().endswith("medimg  | stopped")


@pytest.mark.slow
def test_serve_dicom_runs_the_receiver_and_a_bad_setting_stops_it_with_its_name(
    tmp_path: Path,
) -> None:
    port = find_free_port("127.0.0.1")
    spool = str(tmp_path / "spool")
    process = subprocess.Popen(
        [sys.executable, "-m", "medimg_cli", "serve", "dicom", "--port", str(port)],
        cwd=tmp_path,
        env=_env(DICOM_SPOOL_DIR=spool),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: _answers(port, process), timeout_s=30, what="the C-ECHO")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "stopped" in output

    refused = subprocess.run(
        [sys.executable, "-m", "medimg_cli", "serve", "dicom"],
        cwd=tmp_path,
        env=_env(DICOM_SPOOL_DIR=spool, DICOM_DESTINATION="pacs:104"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert "dicom_receiver: DICOM_DESTINATION must be AE@host:port" in refused.stderr
