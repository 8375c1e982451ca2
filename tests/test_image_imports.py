"""Every image's entrypoint reaches only modules its Dockerfile installs (tests/support/imports.py).

For each docker/*.Dockerfile whose ENTRYPOINT is `python -m <package>`, the imports reachable
from that module (statically, through the project's packages and the modules it names in
strings) must be project packages the image copies, the standard library, or modules of a
distribution in the closure of the project's base dependencies plus the image's extras.
Small checkouts in tmp dirs prove that each way of failing is caught, and a copy of this
checkout with the web tier's old `mri_service` import put back proves the web image's check
would have caught it.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from medimg_cli.__main__ import main as medimg
from tests.support.dockerfile import parse_dockerfile, plugin_dockerfiles
from tests.support.imports import (
    ImageSpec,
    Project,
    dependency_closure,
    image_spec,
    image_violations,
    python_entry_module,
)

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
# The images that run Python (the artifact images only copy files), and any plug-in's.
BUILT_IN_IMAGES = ("gateway", "mri", "skin", "trainer", "web", "dicom-receiver")
PYTHON_IMAGES = (*BUILT_IN_IMAGES, *(plugin.name for plugin in plugin_dockerfiles(ROOT)))


def spec_of(root: Path, name: str) -> ImageSpec:
    project = Project.from_root(root)
    text = (root / "docker" / f"{name}.Dockerfile").read_text(encoding="utf-8")
    spec = image_spec(name, parse_dockerfile(text), project)
    assert spec is not None, f"{name}.Dockerfile has no `python -m` entrypoint"
    return spec


def violations_of(root: Path, name: str) -> list[str]:
    return image_violations(spec_of(root, name), Project.from_root(root))


def test_it_finds_a_python_entrypoint_in_exactly_the_component_images() -> None:
    project = Project.from_root(ROOT)
    found = sorted(
        path.name.removesuffix(".Dockerfile")
        for path in DOCKER.glob("*.Dockerfile")
        if image_spec("x", parse_dockerfile(path.read_text(encoding="utf-8")), project)
    )
    assert tuple(found) == tuple(sorted(PYTHON_IMAGES))


@pytest.mark.parametrize("name", PYTHON_IMAGES)
def test_each_images_entrypoint_reaches_only_what_the_image_installs(name: str) -> None:
    assert violations_of(ROOT, name) == []


def test_it_reads_what_the_web_image_runs_copies_and_installs() -> None:
    spec = spec_of(ROOT, "web")
    assert spec.entry_module == "web"
    assert spec.copied_packages == {"web", "servicekit", "medimg_cli", "medimg"}
    assert spec.extras == {"web"} and spec.requirements == ()
    mri = spec_of(ROOT, "mri")
    assert mri.extras == {"mri"} and mri.requirements == ("torch==2.13.0",)


def test_it_reads_what_the_dicom_receiver_image_runs_copies_and_installs() -> None:
    spec = spec_of(ROOT, "dicom-receiver")
    assert spec.entry_module == "dicom_receiver"
    assert spec.copied_packages == {"dicom_receiver", "servicekit", "medimg_cli", "medimg"}
    assert spec.extras == {"dicom"} and spec.requirements == ()


def test_the_dicom_receiver_image_check_catches_a_missing_extra_or_package(
    tmp_path: Path,
) -> None:
    root = copy_of_this_checkout(tmp_path)
    dockerfile = root / "docker" / "dicom-receiver.Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    # Without the dicom extra, pynetdicom (the SCP) is not in the image.
    assert '".[dicom]"' in text
    dockerfile.write_text(text.replace('".[dicom]"', '"."'), encoding="utf-8")
    found = violations_of(root, "dicom-receiver")
    assert any("imports pynetdicom, which the image does not install" in v for v in found), found
    # Without the generated contracts, the gateway client's stubs are not in the image.
    dockerfile.write_text(text.replace("COPY protos/ protos/\n", ""), encoding="utf-8")
    found = violations_of(root, "dicom-receiver")
    assert any("the image does not COPY medimg/" in v for v in found), found


@pytest.mark.parametrize(
    ("entrypoint", "module"),
    [
        ('["python", "-m", "web"]', "web"),
        ('["/opt/venv/bin/python3", "-m", "gateway"]', "gateway"),
        ('["sh", "-c", "cp -R /artifacts/skin/* /models/skin/"]', None),
        ("python -m web", None),  # the shell form: not what the conventions write
    ],
)
def test_it_reads_the_module_of_a_python_entrypoint_only(entrypoint: str, module: str) -> None:
    stages = parse_dockerfile(f"FROM python:3.11.14-slim AS runtime\nENTRYPOINT {entrypoint}\n")
    assert python_entry_module(stages) == module


def test_the_dependency_closure_follows_requirements_and_their_extras() -> None:
    closure = dependency_closure([Requirement("djangorestframework"), Requirement("celery[redis]")])
    assert {"djangorestframework", "django", "asgiref", "celery", "kombu", "redis"} <= set(
        closure.distributions
    )
    assert "torch" not in closure.distributions and closure.not_installed_here == ()


# --- small checkouts that prove each failure is caught ----------------------------------------


PYPROJECT = """\
[project]
name = "demo"
version = "0.1.0"
dependencies = ["pyyaml>=6"]

[project.optional-dependencies]
app = ["pillow>=11"]
other = ["numpy>=1.26"]
all = ["demo[app,other]"]

[tool.setuptools.packages.find]
where = ["."]
include = ["app*", "other_service*", "shared*"]
exclude = ["tests*", "*.tests", "*.tests.*"]
"""
DOCKERFILE = """\
FROM python:3.11.14-slim-bookworm AS build
COPY pyproject.toml ./
COPY shared/ shared/
COPY app/ app/
RUN pip install --no-cache-dir ".[app]"
FROM python:3.11.14-slim-bookworm AS runtime
COPY --from=build /opt/venv /opt/venv
ENTRYPOINT ["python", "-m", "app"]
"""


def checkout(root: Path, files: dict[str, str]) -> Path:
    """Writes a small project: app/ (the image's), shared/ (copied too), other_service/ (not)."""
    base = {
        "pyproject.toml": PYPROJECT,
        "docker/app.Dockerfile": DOCKERFILE,
        "app/__init__.py": '"""The app."""\n',
        "app/__main__.py": '"""Runs the app."""\n\nfrom app import core\n\ncore.main()\n',
        "app/core.py": '"""The app\'s core."""\n\nimport yaml\nfrom PIL import Image\n',
        "shared/__init__.py": '"""Shared code."""\n',
        "shared/tools.py": '"""Tools."""\n\nimport json\n',
        "other_service/__init__.py": '"""Another component."""\n',
        "other_service/ingest.py": '"""Its ingest."""\n\nimport numpy\n',
        "app/tests/__init__.py": "",
        "app/tests/helpers.py": '"""Test helpers."""\n\nimport pytest\n',
    }
    for name, text in {**base, **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_a_clean_small_checkout_has_no_violations(tmp_path: Path) -> None:
    assert violations_of(checkout(tmp_path, {}), "app") == []


@pytest.mark.parametrize(
    ("core", "expected"),
    [
        # Another component's package, at module level.
        (
            "from other_service import ingest\n",
            "reaches other_service.ingest: the image does not COPY other_service/",
        ),
        # ... inside a function, reached only when it runs.
        (
            "def run() -> None:\n    from other_service.ingest import load\n",
            "reaches other_service.ingest: the image does not COPY other_service/",
        ),
        # A relative import of a test helper: copied, but never installed.
        (
            "from .tests import helpers\n",
            "reaches app.tests.helpers: pyproject.toml does not install it",
        ),
        # A third-party module of another extra only.
        ("import numpy\n", "imports numpy, which the image does not install"),
        # A module named in a string, as INSTALLED_APPS or include() name them.
        (
            'APPS = ["other_service"]\nURLS = "other_service.ingest"\n',
            "reaches other_service.ingest",
        ),
        # A module of our own that does not exist.
        ("import app.nothing\n", "app.nothing is not a module of the project"),
    ],
)
def test_it_fails_on_each_way_of_reaching_what_the_image_lacks(
    tmp_path: Path, core: str, expected: str
) -> None:
    root = checkout(tmp_path, {"app/core.py": '"""The app\'s core."""\n\n' + core})
    found = violations_of(root, "app")
    assert any(expected in violation for violation in found), found


def test_it_names_the_chain_from_the_entrypoint_to_the_import(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {
            "app/core.py": '"""Core."""\n\n\ndef main() -> None:\n    from shared import tools\n',
            "shared/tools.py": '"""Tools."""\n\nimport numpy\n',
        },
    )
    (violation,) = violations_of(root, "app")
    assert "shared.tools:3 imports numpy" in violation
    assert "(app -> app.__main__ -> app.core -> shared.tools)" in violation


def test_it_leaves_out_imports_that_never_run_or_may_fail(tmp_path: Path) -> None:
    core = """\
    \"\"\"Core.\"\"\"

    from typing import TYPE_CHECKING

    if TYPE_CHECKING:
        import numpy
        from other_service import ingest
    try:
        import uvloop
    except ImportError:
        uvloop = None
    MODEL_FILE = "model_card.json"
    """
    assert violations_of(checkout(tmp_path, {"app/core.py": core}), "app") == []


def test_an_extra_that_provides_the_module_makes_it_pass(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"app/core.py": '"""Core."""\n\nimport numpy\n'})
    assert violations_of(root, "app")
    dockerfile = root / "docker" / "app.Dockerfile"
    dockerfile.write_text(DOCKERFILE.replace('".[app]"', '".[all]"'), encoding="utf-8")
    assert violations_of(root, "app") == []


# --- the regression this test was written for -----------------------------------------------


def copy_of_this_checkout(target: Path) -> Path:
    """Copies the sources an image's check reads: pyproject, docker/ and the packages."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "models", "static")
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(DOCKER, target / "docker")
    project = Project.from_root(ROOT)
    for folder in project.packages.values():
        shutil.copytree(folder, target / folder.relative_to(ROOT), ignore=ignore)
    return target


def test_the_web_image_check_catches_the_web_tier_importing_mri_service(tmp_path: Path) -> None:
    root = copy_of_this_checkout(tmp_path)
    assert violations_of(root, "web") == []
    services = root / "web" / "series" / "uploads.py"
    # The import the web tier once had for its upload-time check.
    text = services.read_text(encoding="utf-8")
    anchor = "\nfrom django.conf import settings\n"
    old_import = "from mri_service.ingest import IngestLimits, open_series\n"
    assert anchor in text
    services.write_text(text.replace(anchor, anchor + old_import, 1), encoding="utf-8")
    found = violations_of(root, "web")
    assert any(
        "reaches mri_service.ingest: the image does not COPY mri_service/" in v
        and "web.series.uploads -> mri_service.ingest" in v
        for v in found
    ), found
    # pydicom, which mri_service.ingest imports, is no longer a violation of its own: the
    # web extra installs it now (de-identification of what the web tier keeps of a study).


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_scaffolded_plugin_image_reaches_only_what_it_installs(
    tmp_path: Path, framework: str
) -> None:
    root = copy_of_this_checkout(tmp_path)
    argv = ["new-service", "eye", "--labels", "normal,cataract", "--framework", framework]
    assert medimg([*argv, "--root", str(root)]) == 0
    assert violations_of(root, "eye") == []
    # Its framework comes from a pip install of its own, not from an extra: without it,
    # the service's import of the framework is caught.
    dockerfile = root / "docker" / "eye.Dockerfile"
    pin = "torch==2.13.0" if framework == "torch" else "tensorflow==2.21.0"
    text = dockerfile.read_text(encoding="utf-8")
    assert f'"{pin}"' in text
    dockerfile.write_text(text.replace(f'"{pin}"', '"pip"'), encoding="utf-8")
    module = "torch" if framework == "torch" else "tensorflow"
    assert any(
        f"imports {module}, which the image does not install" in v
        for v in violations_of(root, "eye")
    ), violations_of(root, "eye")
