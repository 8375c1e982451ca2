"""The image of a new service: docker/<name>.Dockerfile, its pins read from pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from medimg_cli.scaffold.render import render_one
from medimg_cli.scaffold.spec import ScaffoldError, ServiceSpec

DOCKER = PurePosixPath("docker")
# The extra of pyproject.toml whose pins each framework's image installs, and the packages
# taken from it: the built-in service of the same framework's (mri for torch, skin for
# Keras), so that a plug-in runs the very versions the platform is tested with.
FRAMEWORK_PINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("mri", ("torch",)),
    "keras": ("skin", ("tensorflow", "keras")),
}
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!-]+)")


def dockerfile_path(spec: ServiceSpec) -> PurePosixPath:
    """Returns where the service's Dockerfile goes: docker/<name>.Dockerfile."""
    return DOCKER / f"{spec.name}.Dockerfile"


def plan_image(
    root: Path, spec: ServiceSpec, created: dict[PurePosixPath, str], notes: list[str]
) -> None:
    """Adds the service's Dockerfile to created; a checkout without docker/ gets a note.

    Raises:
        ScaffoldError: pyproject.toml does not pin the framework's packages exactly once.
    """
    if not (root / DOCKER).is_dir():
        notes.append(f"{DOCKER}/ not found: no Dockerfile written for medimg/{spec.name}")
        return
    created[dockerfile_path(spec)] = render_dockerfile(spec, read_pyproject(root))


def read_pyproject(root: Path) -> dict[str, Any]:
    """Returns the checkout's pyproject.toml, parsed; raises ScaffoldError if it cannot."""
    try:
        with (root / "pyproject.toml").open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ScaffoldError(f"cannot read pyproject.toml: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScaffoldError(f"pyproject.toml is not valid TOML: {exc}") from None


def framework_pins(pyproject: dict[str, Any], framework: str) -> tuple[str, ...]:
    """Returns the framework's exact pins, such as ("torch==2.13.0",), from its extra."""
    extra, packages = FRAMEWORK_PINS[framework]
    project = pyproject.get("project", {})
    requirements = project.get("optional-dependencies", {}).get(extra)
    if not isinstance(requirements, list):
        raise ScaffoldError(
            f"pyproject.toml has no `{extra}` extra to take {framework}'s pins from"
        )
    pins = []
    for package in packages:
        found = [pin for pin in map(_exact_pin, requirements) if pin and pin[0] == package]
        if len(found) != 1:
            raise ScaffoldError(
                f"pyproject.toml's `{extra}` extra should pin {package} once, as "
                f"{package}==<version>: the {framework} image installs that version"
            )
        pins.append(f"{package}=={found[0][1]}")
    return tuple(pins)


def _exact_pin(requirement: object) -> tuple[str, str] | None:
    """Returns (normalised name, version) of a `name==version` requirement, else None."""
    match = _PIN.fullmatch(requirement.strip()) if isinstance(requirement, str) else None
    if match is None:
        return None
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2)


def render_dockerfile(spec: ServiceSpec, pyproject: dict[str, Any]) -> str:
    """Returns docker/<name>.Dockerfile: skin's and mri's shape, the framework's pins."""
    version = pyproject.get("project", {}).get("version")
    if not isinstance(version, str) or not version:
        raise ScaffoldError("pyproject.toml has no project version to tag the image with")
    extra, _ = FRAMEWORK_PINS[spec.framework]
    pins = " ".join(f'"{pin}"' for pin in framework_pins(pyproject, spec.framework))
    install = render_one(
        f"docker/install-{spec.framework}.Dockerfile", spec, {"pins": pins, "pins_extra": extra}
    )
    return render_one(
        "docker/service.Dockerfile",
        spec,
        {"version": version, "framework_install": install.rstrip("\n")},
    )
