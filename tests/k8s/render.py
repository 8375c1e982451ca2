"""Renders kustomize directories with `kubectl kustomize` and validates objects offline."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
OVERLAYS = ("cpu", "gpu")
# kubectl here is 1.32 (kustomize v5.5); kubernetes-validate bundles 1.25 to 1.37.
KUBERNETES_VERSION = "1.32"

Manifest = dict[str, Any]


class KubectlMissing(RuntimeError):
    """kubectl is not installed, so no overlay can be rendered."""


class RenderError(RuntimeError):
    """`kubectl kustomize` refused a directory; the message holds its error output."""


def kubectl() -> str:
    """Returns the path of kubectl; raises KubectlMissing with what to do when there is none."""
    path = shutil.which("kubectl")
    if path is None:
        raise KubectlMissing(
            "kubectl is not on PATH: the k8s tests render every overlay with "
            "`kubectl kustomize` (kustomize v5). Install kubectl 1.27 or newer "
            "(https://kubernetes.io/docs/tasks/tools/); no cluster is needed."
        )
    return path


def render(directory: Path) -> list[Manifest]:
    """Returns the objects `kubectl kustomize directory` renders, in its order."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory} failed:\n{result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_overlay(overlay: str, root: Path = K8S_DIR) -> list[Manifest]:
    """Renders <root>/overlays/<overlay>; root is a k8s/ directory, this repository's by default."""
    return render(root / "overlays" / overlay)


def render_with_components(
    resources: Sequence[Path], components: Sequence[Path], workdir: Path
) -> list[Manifest]:
    """Renders a kustomization in workdir made of resources plus components.

    kustomize takes relative paths only, so both are written relative to workdir.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    document = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(path, workdir) for path in resources],
        "components": [os.path.relpath(path, workdir) for path in components],
    }
    (workdir / "kustomization.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return render(workdir)


def label(obj: Mapping[str, Any], name: str) -> str | None:
    """Returns one label of an object's metadata, or None."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    value = labels.get(name)
    return None if value is None else str(value)


def describe(obj: Mapping[str, Any]) -> str:
    """Returns `Kind/name`, the way violations and errors name an object."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def find(objects: Iterable[Manifest], kind: str, name: str) -> Manifest:
    """Returns the object of that kind and name itself (not a copy); LookupError when absent."""
    for obj in objects:
        if obj.get("kind") == kind and (obj.get("metadata") or {}).get("name") == name:
            return obj
    raise LookupError(f"no {kind}/{name} in the rendered objects")


def validate(objects: Iterable[Mapping[str, Any]], version: str = KUBERNETES_VERSION) -> list[str]:
    """Returns one error per object that fails kubernetes-validate --strict (none: all valid).

    An object whose kind has no bundled schema is an error too: every kind here is a
    built-in one, so a missing schema means a typo in kind or apiVersion.
    """
    # Imported by name: kubernetes-validate ships no type information.
    kv = importlib.import_module("kubernetes_validate")
    errors = []
    for obj in objects:
        try:
            kv.validate(dict(obj), version, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            errors.append(f"{describe(obj)}: {path}: {exc.message}")
        except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as exc:
            errors.append(f"{describe(obj)}: {exc.message}")
    return errors
