"""The fixture of the plug-in and build-script checks: a checkout with two scaffolded services."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medimg_cli.__main__ import main as medimg
from tests.dockerfiles.images import (
    BUILD_SCRIPT,
    DOCKER,
    ROOT,
)


@pytest.fixture
def scaffolded(tmp_path: Path) -> Path:
    """Returns a small checkout into which `medimg new-service` wrote eye (torch), lung (keras).

    It holds what the scaffolder needs (pyproject.toml and the three package folders, here
    stand-ins), docker/, .dockerignore, the build script and the images' other COPY sources.
    """
    root = tmp_path / "medimg"
    root.mkdir()
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(DOCKER, root / "docker")
    (root / "scripts").mkdir()
    shutil.copy(BUILD_SCRIPT, root / "scripts" / BUILD_SCRIPT.name)
    for package in ("servicekit", "gateway", "medimg_cli", "protos"):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text('"""A stand-in."""\n')
    for name, framework in (("eye", "torch"), ("lung", "keras")):
        argv = ["new-service", name, "--labels", "normal,cataract", "--framework", framework]
        assert medimg([*argv, "--root", str(root)]) == 0
    return root
