"""Tests of the `medimg` command line: parsing, `serve` and `up` refusals, and a real `up`."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medimg_cli.__main__ import main
from medimg_cli.components import Component
from medimg_cli.ports import find_free_port


@pytest.fixture
def only_gateway_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes the gateway the one installed component, whatever this checkout holds."""
    monkeypatch.setattr(Component, "is_installed", lambda self: self.name == "gateway")


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "diagnose" in capsys.readouterr().out


def test_up_refuses_a_taken_gateway_port_before_starting_anything(
    only_gateway_installed: None, listener: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["up", "--gateway-port", str(listener)])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == (
        f"medimg up: error: port {listener} (gateway) is already in use; "
        "stop the other program or pass --gateway-port\n"
    )
    assert "skin: not installed in this checkout, skipped" in captured.out
    assert "starting" not in captured.out


def test_up_with_nothing_installed_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Component, "is_installed", lambda self: False)

    assert main(["up"]) == 1
    assert "nothing to start" in capsys.readouterr().err


def test_up_refuses_an_unknown_component(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--only", "lung"]) == 1
    assert "unknown component lung" in capsys.readouterr().err


def test_serve_refuses_a_component_that_is_not_installed(
    only_gateway_installed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "mri"]) == 1
    assert "mri is not installed in this checkout" in capsys.readouterr().err


def _gateway_missing() -> str | None:
    """Returns why the gateway cannot run in this checkout, or None when it can."""
    try:
        if importlib.util.find_spec("gateway.__main__") is None:
            return "the gateway package has no __main__ yet in this checkout"
    except ImportError as exc:
        return f"the gateway package cannot be imported: {exc}"
    return None


def _wait_until_listening(port: int, process: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "medimg up exited before the gateway listened"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the gateway did not listen on port {port} within {timeout_s}s")


@pytest.mark.slow
@pytest.mark.skipif(_gateway_missing() is not None, reason=str(_gateway_missing()))
def test_up_runs_the_gateway_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = find_free_port("127.0.0.1")
    env = {**os.environ, "GATEWAY_GRACE_SECONDS": "1", "NO_COLOR": "1"}
    command = ["up", "--only", "gateway", "--gateway-port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "medimg_cli", *command],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_until_listening(port, process, timeout_s=15)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, output
    assert "gateway: not installed" not in output
    assert "medimg  | stopping" in output
    assert output.rstrip().endswith("medimg  | stopped")
    assert f"state under {tmp_path / 'var'}" in output


@pytest.mark.slow
def test_two_stacks_started_in_another_folder_keep_their_state_there_apart(
    tmp_path: Path,
) -> None:
    """Two `up`s of the web tier from one folder, the second moved by --port-offset."""
    env = {**os.environ, "NO_COLOR": "1", "WEB_GRACE_SECONDS": "1"}
    for name in ("DATABASE_URL", "WEB_MEDIA_ROOT", "MEDIMG_STATE_DIR"):
        env.pop(name, None)
    offset = 100  # only the folder it picks matters: --web-port gives each its port
    processes = []
    try:
        for port_offset in (0, offset):
            web_port = find_free_port("127.0.0.1")
            command = ["up", "--only", "web", "--web-port", str(web_port)]
            command += ["--port-offset", str(port_offset)]
            process = subprocess.Popen(
                [sys.executable, "-m", "medimg_cli", *command],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            processes.append(process)
            _wait_until_listening(web_port, process, timeout_s=90)
    finally:
        outputs = []
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                outputs.append(process.communicate(timeout=30)[0])
            except subprocess.TimeoutExpired:
                process.kill()
                outputs.append(process.communicate()[0])
    first, second = tmp_path / "var", tmp_path / "var" / f"offset-{offset}"
    assert (first / "web" / "db.sqlite3").is_file(), outputs[0]
    assert (second / "web" / "db.sqlite3").is_file(), outputs[1]
    assert f"state under {first}" in outputs[0]
    assert f"state under {second}" in outputs[1]
