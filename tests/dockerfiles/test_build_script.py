"""scripts/build_images.sh: the tags it builds, its refusals, and the plug-ins it finds."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.dockerfiles.images import (
    BUILD_SCRIPT,
    IMAGE_NAMES,
    ROOT,
    VERSION,
)


def make_repo(tmp_path: Path, script: str, *, web: bool) -> Path:
    """Returns a copy of the repository's top: the script and pyproject.toml, maybe web/."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "build_images.sh").write_text(script)
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    if web:
        (repo / "web").mkdir()
        (repo / "web" / "manage.py").write_text("")
    return repo


def run_build_script(
    tmp_path: Path, repo: Path, *args: str, info_rc: int = 0, path: str | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Runs the repo's script with a stub `docker` that records; returns it and the calls."""
    stub = tmp_path / "bin"
    stub.mkdir(parents=True)
    calls = tmp_path / "calls"
    (stub / "docker").write_text(
        f'#!/bin/sh\n[ "$1" = info ] && exit {info_rc}\necho "$*" >> {shlex.quote(str(calls))}\n'
    )
    (stub / "docker").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CONTAINER_ENGINE"}
    env["PATH"] = path if path is not None else f"{stub}{os.pathsep}{env.get('PATH', '')}"
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, "scripts/build_images.sh", *args], cwd=repo, env=env, capture_output=True, text=True
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


def check_build_calls(calls: Sequence[str], names: Sequence[str]) -> list[str]:
    expected = [f"build -f docker/{n}.Dockerfile -t medimg/{n}:{VERSION} ." for n in names]
    return [] if list(calls) == expected else [f"built {list(calls)}, not {expected}"]


def script_text() -> str:
    return BUILD_SCRIPT.read_text()


def test_it_finds_the_build_script_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(BUILD_SCRIPT)], check=True)
    assert os.access(BUILD_SCRIPT, os.X_OK)


@pytest.mark.parametrize("web", [True, False], ids=["web-present", "web-pending"])
def test_it_builds_exactly_the_conventions_tags(tmp_path: Path, web: bool) -> None:
    result, calls = run_build_script(tmp_path, make_repo(tmp_path, script_text(), web=web))
    assert result.returncode == 0, result.stderr
    names = [n for n in IMAGE_NAMES if web or n != "web"]
    assert check_build_calls(calls, names) == []
    assert web or f"skipping medimg/web:{VERSION}" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [(" ohif)", ")"), ('tag="medimg/$name:$version"', 'tag="medimg/$name:latest"')],
)
def test_it_rejects_a_build_script_off_the_conventions(tmp_path: Path, old: str, new: str) -> None:
    assert old in script_text()
    repo = make_repo(tmp_path, script_text().replace(old, new), web=True)
    _, calls = run_build_script(tmp_path, repo)
    assert check_build_calls(calls, IMAGE_NAMES)


def test_it_stops_with_a_message_when_no_engine_is_on_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    repo = make_repo(tmp_path, script_text(), web=True)
    result, calls = run_build_script(tmp_path, repo, path=str(empty))
    assert (result.returncode, calls) == (1, [])
    assert "neither docker nor podman is on PATH" in result.stderr


def test_it_stops_with_a_message_when_the_engine_does_not_answer(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, script_text(), web=True)
    result, calls = run_build_script(tmp_path, repo, info_rc=1)
    assert (result.returncode, calls) == (1, [])
    assert "no engine answers" in result.stderr


BUILT_IN_NOW = [n for n in IMAGE_NAMES if n != "web"]  # web/ is not in a scaffolded checkout


def test_it_builds_the_scaffolded_plugins_after_the_built_in_images(
    tmp_path: Path, scaffolded: Path
) -> None:
    result, calls = run_build_script(tmp_path, scaffolded)
    assert result.returncode == 0, result.stderr
    assert check_build_calls(calls, [*BUILT_IN_NOW, "eye", "lung"]) == []


def test_it_builds_one_plugin_by_name(tmp_path: Path, scaffolded: Path) -> None:
    result, calls = run_build_script(tmp_path, scaffolded, "lung")
    assert result.returncode == 0, result.stderr
    assert check_build_calls(calls, ["lung"]) == []


def test_it_skips_a_plugin_without_a_dockerfile_and_says_so(
    tmp_path: Path, scaffolded: Path
) -> None:
    (scaffolded / "docker" / "lung.Dockerfile").unlink()
    result, calls = run_build_script(tmp_path, scaffolded)
    assert result.returncode == 0, result.stderr
    assert check_build_calls(calls, [*BUILT_IN_NOW, "eye"]) == []
    assert f"skipping medimg/lung:{VERSION}: lung_service has no docker/lung.Dockerfile" in (
        result.stdout
    )
    result, calls = run_build_script(tmp_path / "again", scaffolded, "lung")
    assert (result.returncode, calls) == (2, [])
    assert "lung_service has no docker/lung.Dockerfile" in result.stderr


def test_it_refuses_an_image_it_does_not_know(tmp_path: Path) -> None:
    result, calls = run_build_script(tmp_path, make_repo(tmp_path, script_text(), web=True), "eye")
    assert (result.returncode, calls) == (2, [])
    assert "unknown image 'eye'" in result.stderr
