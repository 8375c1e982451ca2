"""Plans and writes a new disease service: every file it creates and every file it edits."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from medimg_cli.components import PLUGIN_FILE, ServiceKind
from medimg_cli.scaffold import deployment, image
from medimg_cli.scaffold.render import render_service
from medimg_cli.scaffold.spec import ScaffoldError, ServiceSpec


@dataclass
class Plan:
    """What `medimg new-service` will do, computed and checked before anything is written."""

    root: Path
    spec: ServiceSpec
    package: dict[PurePosixPath, str]  # the new package's files, by path inside it
    created: dict[PurePosixPath, str] = field(default_factory=dict)  # other new files
    edited: dict[PurePosixPath, str] = field(default_factory=dict)  # new text of existing files
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    @property
    def package_dir(self) -> Path:
        """Returns where the package goes."""
        return self.root / self.spec.module

    def write(self) -> None:
        """Writes the package, then the other new files, then the edits.

        The package is written into a hidden folder and renamed into place, so an
        interrupted run leaves no half package that a second run would refuse.

        Raises:
            ScaffoldError: something appeared at a target since the plan was made.
        """
        self.check_targets_are_free()
        staging = self.root / f".{self.spec.module}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for path, text in self.package.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        staging.rename(self.package_dir)
        for path, text in self.created.items():
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("x", encoding="utf-8") as out:
                out.write(text)
        for path, text in self.edited.items():
            _replace_text(self.root / path, text)

    def check_targets_are_free(self) -> None:
        """Raises ScaffoldError when the package or another new file exists already."""
        taken = [self.package_dir] if self.package_dir.exists() else []
        taken += [self.root / path for path in self.created if (self.root / path).exists()]
        if taken:
            raise ScaffoldError(
                f"{', '.join(map(str, taken))} already exist(s); new-service never overwrites"
            )


def _replace_text(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def component_json(spec: ServiceSpec) -> str:
    """Returns the package's component.json: the row of the component table it adds."""
    row = {
        "name": spec.name,
        "module": spec.module,
        "prefix": spec.prefix,
        "port": spec.port,
        "kind": ServiceKind.IMAGE.value,
    }
    return json.dumps(row, indent=2) + "\n"


def plan_service(root: Path, spec: ServiceSpec) -> Plan:
    """Returns the plan of the service described by spec in the checkout at root.

    Raises:
        ScaffoldError: a target exists already (the package, its Dockerfile, a k8s/ file),
            a deployment file cannot be edited, or pyproject.toml lacks the image's pins.
    """
    package = render_service(spec)
    package[PurePosixPath(PLUGIN_FILE)] = component_json(spec)
    plan = Plan(root=root, spec=spec, package=package)
    deployment.plan_deployment(plan.root, spec, plan.created, plan.edited, plan.notes)
    image.plan_image(plan.root, spec, plan.created, plan.notes)
    plan.check_targets_are_free()
    return plan
