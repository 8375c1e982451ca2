"""The rules of plug-in disease services' images (`medimg new-service`)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from medimg_cli.components import Component, discover_plugins
from tests.support.dockerfile.parser import (
    _FRAMEWORK_IMPORTS,
    PLUGIN_FRAMEWORKS,
    SHARED_SOURCES,
    Stage,
    parse_dockerfile,
)
from tests.support.dockerfile.rules import (
    check_container_env,
    check_copies_only,
    check_copy_sources_exist,
    check_copy_sources_kept,
    check_cpu_torch,
    check_entrypoint,
    check_installs_exactly,
    check_installs_only,
    check_multi_stage,
    check_no_healthcheck,
    check_pinned_bases,
    check_runs_as_non_root,
    check_runtime_copies_only_venv,
)


def plugin_dockerfiles(root: Path) -> tuple[Component, ...]:
    """Returns the plug-ins of the checkout at root that have a docker/<name>.Dockerfile.

    A plug-in is a `<root>/*_service/component.json`, read as `medimg` reads it; a
    malformed one raises medimg_cli.components.ComponentError.
    """
    return tuple(
        plugin
        for plugin in discover_plugins(root)
        if (root / "docker" / f"{plugin.name}.Dockerfile").is_file()
    )


def unknown_dockerfiles(root: Path, built_ins: Sequence[str]) -> list[str]:
    """Returns the names of root's docker/*.Dockerfile that are neither built-in nor plug-in."""
    known = {*built_ins, *(plugin.name for plugin in plugin_dockerfiles(root))}
    names = sorted(
        p.name.removesuffix(".Dockerfile") for p in (root / "docker").glob("*.Dockerfile")
    )
    return [name for name in names if name not in known]


def framework_of(package_dir: Path) -> str | None:
    """Returns the framework a plug-in's package imports (tests aside); None for none or both."""
    sources = [
        path.read_text(encoding="utf-8")
        for path in sorted(package_dir.rglob("*.py"))
        if "tests" not in path.relative_to(package_dir).parts
    ]
    found = [
        name for name, imports in _FRAMEWORK_IMPORTS.items() if any(map(imports.search, sources))
    ]
    return found[0] if len(found) == 1 else None


def framework_pins(pyproject: Mapping[str, object], framework: str) -> tuple[str, ...]:
    """Returns the framework's pins ("torch==2.13.0", ...) as the extra it follows has them."""
    extra, packages = PLUGIN_FRAMEWORKS[framework]
    project = pyproject["project"]
    assert isinstance(project, dict)
    requirements: list[str] = project["optional-dependencies"][extra]
    pins = []
    for package in packages:
        found = [r for r in requirements if r.startswith(f"{package}==")]
        assert len(found) == 1, f"pyproject's {extra} extra should pin {package} once"
        pins.append(found[0])
    return tuple(pins)


def check_plugin_image(
    stages: Sequence[Stage], plugin: Component, framework: str, pins: Sequence[str]
) -> list[str]:
    """Every rule of a component image, for a plug-in: the project bare plus its framework."""
    violations = [
        *check_multi_stage(stages),
        *check_pinned_bases(stages),
        *check_runs_as_non_root(stages),
        *check_no_healthcheck(stages),
        *check_installs_only(stages, set()),
        *check_installs_exactly(stages, pins),
        *check_copies_only(stages, SHARED_SOURCES | {plugin.module}),
        *check_entrypoint(stages, plugin.module),
        *check_runtime_copies_only_venv(stages),
        *check_container_env(stages, plugin.env_prefix, plugin.default_port),
    ]
    if framework == "torch":
        (torch,) = (pin for pin in pins if pin.startswith("torch=="))
        violations += check_cpu_torch(stages, torch.partition("==")[2])
    return violations


def plugin_image_violations(root: Path, plugin: Component) -> list[str]:
    """Returns what breaks the rules in a plug-in's docker/<name>.Dockerfile in the checkout.

    The framework is the one the package imports; the pins are root's pyproject.toml's; the
    COPY sources must exist under root and be kept by its .dockerignore.
    """
    assert plugin.package_dir is not None
    framework = framework_of(plugin.package_dir)
    if framework is None:
        return [f"{plugin.module} imports neither torch nor keras alone"]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    stages = parse_dockerfile((root / "docker" / f"{plugin.name}.Dockerfile").read_text())
    return [
        *check_plugin_image(stages, plugin, framework, framework_pins(pyproject, framework)),
        *check_copy_sources_exist(stages, root),
        *check_copy_sources_kept(stages, (root / ".dockerignore").read_text()),
    ]
