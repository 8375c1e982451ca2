"""The images the repository builds, their conventions, and ways to read or break a Dockerfile."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from medimg_cli.components import Component, ServiceKind, plugin_launch
from medimg_cli.scaffold.image import render_dockerfile
from medimg_cli.scaffold.spec import ServiceSpec
from tests.support.dockerfile import (
    Stage,
    check_plugin_image,
    framework_pins,
    parse_dockerfile,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BUILD_SCRIPT = ROOT / "scripts" / "build_images.sh"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]


@dataclass(frozen=True)
class ServiceImage:
    """A component image of the conventions: its module, extra, env prefix and port.

    host is the listen address's variable after the prefix (the receiver's is not HOST).
    """

    name: str
    module: str
    extra: str
    prefix: str
    port: int
    host: str = "HOST"


@dataclass(frozen=True)
class StaticSiteImage:
    """A prebuilt web app from an npm package, served by nginx: the OHIF viewer."""

    name: str
    package: str
    version: str
    sha512: str  # of the package's tarball, as the registry publishes it (hex here)
    port: int
    template: str  # the nginx server template, relative to the repository


@dataclass(frozen=True)
class ArtifactImage:
    """A model-artifact image: the folder it holds and where its init container copies it."""

    name: str
    holds: str
    target: str


SERVICES = (
    ServiceImage("gateway", "gateway", "gateway", "GATEWAY_", 50051),
    ServiceImage("skin", "skin_service", "skin", "SKIN_", 50061),
    ServiceImage("mri", "mri_service", "mri", "MRI_", 50062),
    ServiceImage("trainer", "trainer_service", "trainer", "TRAINER_", 50063),
    ServiceImage("web", "web", "web", "WEB_", 8000),
    ServiceImage("dicom-receiver", "dicom_receiver", "dicom", "DICOM_", 11112, "BIND_ADDRESS"),
)
ARTIFACTS = (
    ArtifactImage("skin-model", "/artifacts/skin", "/models/skin"),
    ArtifactImage("mri-model", "/artifacts/model-store", "/home/model-server/model-store"),
)
# `npm view @ohif/app@3.13.2 dist.integrity` (base64), as hex, checked on the tarball here.
OHIF_SHA512 = (
    "5997719a9986eeba85816f5924b71b82bdd70ad2e2d4a0cd3e831a798e4f3dee"
    "a3e06e1f8c48e393271933a0ba664d85f3b04ac457e9abe8dde715d907d13c10"
)
STATIC_SITES = (
    StaticSiteImage(
        "ohif", "@ohif/app", "3.13.2", OHIF_SHA512, 8080, "docker/ohif/default.conf.template"
    ),
)
IMAGE_NAMES = tuple(image.name for image in (*SERVICES, *ARTIFACTS, *STATIC_SITES))
MRI_ARCHIVES = ("mri-single.mar", "mri-scantype.mar")


def dockerfile_text(name: str) -> str:
    return (DOCKER / f"{name}.Dockerfile").read_text()


def stages_of(name: str) -> list[Stage]:
    return parse_dockerfile(dockerfile_text(name))


def pin_in(extra: str, package: str) -> str:
    pins = [r.split("==", 1)[1] for r in EXTRAS[extra] if r.startswith(f"{package}==")]
    assert len(pins) == 1, f"pyproject's {extra} extra should pin {package} once"
    return pins[0]


def broken(name: str, old: str, new: str) -> list[Stage]:
    """Returns the stages of a real Dockerfile with one edit, asserting that the edit applies."""
    text = dockerfile_text(name)
    assert old in text, f"{old!r} not in {name}.Dockerfile: update this test"
    return parse_dockerfile(text.replace(old, new))


EYE = Component("eye", "eye_service", "EYE_", 50070, ServiceKind.IMAGE, plugin_launch)


def plugin_text(framework: str) -> str:
    """Returns the Dockerfile `medimg new-service eye` writes for the framework."""
    spec = ServiceSpec("eye", ("normal", "cataract"), framework, EYE.default_port)
    return render_dockerfile(spec, PYPROJECT)


def plugin_violations(framework: str, text: str) -> list[str]:
    stages = parse_dockerfile(text)
    return check_plugin_image(stages, EYE, framework, framework_pins(PYPROJECT, framework))


def broken_plugin(framework: str, old: str, new: str) -> list[str]:
    """Returns the violations of eye's generated Dockerfile with one edit."""
    text = plugin_text(framework)
    assert old in text, f"{old!r} not in the generated {framework} Dockerfile: update this test"
    return plugin_violations(framework, text.replace(old, new))


def write_component(root: Path, name: str, port: int = 50070) -> None:
    """Writes <root>/<name>_service/component.json as `medimg new-service` does."""
    row = {"name": name, "module": f"{name}_service", "prefix": f"{name.upper()}_"}
    path = root / f"{name}_service" / "component.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**row, "port": port, "kind": "image"}))
