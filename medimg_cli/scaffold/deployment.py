"""The files outside the package a new service adds to or edits: k8s/ entries and .env.example."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from medimg_cli.scaffold.image import read_pyproject
from medimg_cli.scaffold.render import render_one
from medimg_cli.scaffold.spec import ScaffoldError, ServiceSpec

K8S_BASE = PurePosixPath("k8s/base")
OVERLAYS = ("cpu", "gpu")
REGISTRY_FILE = K8S_BASE / "gateway-registry.yaml"
ENV_FILE = PurePosixPath(".env.example")
# .env.example aligns its comments on this column.
_ENV_COMMENT_COLUMN = 39


def plan_deployment(
    root: Path,
    spec: ServiceSpec,
    created: dict[PurePosixPath, str],
    edited: dict[PurePosixPath, str],
    notes: list[str],
) -> None:
    """Adds the k8s/ and .env.example changes of a new service to created and edited.

    A checkout without k8s/ or .env.example gets a note instead; one whose files are
    there but cannot take the entry (the disease listed already, a malformed file)
    raises ScaffoldError before anything is written.
    """
    _plan_env(root, spec, edited, notes)
    if not (root / K8S_BASE / "kustomization.yaml").is_file():
        notes.append(f"{K8S_BASE}/kustomization.yaml not found: no Kubernetes entries written")
        return
    base_file = K8S_BASE / f"{spec.name}.yaml"
    # The image tag is the project's version, as scripts/build_images.sh tags the image.
    version = read_pyproject(root).get("project", {}).get("version", "")
    created[base_file] = render_one("k8s/service.yaml", spec, {"version": str(version)})
    edited[K8S_BASE / "kustomization.yaml"] = _with_list_entry(
        root, K8S_BASE / "kustomization.yaml", "resources", base_file.name
    )
    edited[REGISTRY_FILE] = _with_registry_entry(root, spec)
    for overlay in OVERLAYS:
        folder = PurePosixPath("k8s/overlays") / overlay
        patch = PurePosixPath("patches") / f"{spec.name}.yaml"
        created[folder / patch] = render_one(f"k8s/patch-{overlay}.yaml", spec)
        edited[folder / "kustomization.yaml"] = _with_list_entry(
            root, folder / "kustomization.yaml", "patches", {"path": str(patch)}
        )


def _read(root: Path, path: PurePosixPath) -> str:
    try:
        return (root / path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScaffoldError(f"cannot read {path}: {exc.strerror}") from None


def _with_list_entry(root: Path, path: PurePosixPath, key: str, entry: Any) -> str:
    """Returns a kustomization.yaml with entry appended to its key's list.

    Kustomization files carry no comments, so PyYAML may rewrite them whole.
    """
    try:
        data = yaml.safe_load(_read(root, path))
    except yaml.YAMLError as exc:
        raise ScaffoldError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScaffoldError(f"{path} is not a kustomization (a YAML mapping)")
    entries = data.setdefault(key, [])
    if not isinstance(entries, list):
        raise ScaffoldError(f"{path}: {key} is not a list")
    if entry in entries:
        raise ScaffoldError(f"{path} already lists {entry}; remove it or choose another name")
    entries.append(entry)
    return yaml.safe_dump(data, sort_keys=False)


def _with_registry_entry(root: Path, spec: ServiceSpec) -> str:
    """Returns the gateway registry with the service's route appended; its comments stay."""
    text = _read(root, REGISTRY_FILE)
    try:
        before = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ScaffoldError(f"{REGISTRY_FILE} is not valid YAML: {exc}") from None
    models = before.get("models") if isinstance(before, dict) else None
    if not isinstance(models, list):
        raise ScaffoldError(f"{REGISTRY_FILE} has no `models:` list")
    if any(isinstance(m, dict) and m.get("disease") == spec.name for m in models):
        raise ScaffoldError(f"{REGISTRY_FILE} already routes disease {spec.name!r}")
    indent = _entry_indent(text)
    entry = (
        f"{indent}- disease: {spec.name}\n"
        f"{indent}  kind: image\n"
        f'{indent}  addresses: ["{spec.name}:{spec.port}"]\n'
    )
    after_text = text.rstrip("\n") + "\n" + entry
    # Appending is right only while `models:` is the file's last block: check the result.
    after = yaml.safe_load(after_text)
    expected = {"disease": spec.name, "kind": "image", "addresses": [f"{spec.name}:{spec.port}"]}
    if after.get("models") != [*models, expected]:
        raise ScaffoldError(
            f"{REGISTRY_FILE}: cannot append the route (is `models:` not the last block?); "
            f"add it by hand: {expected}"
        )
    return after_text


def _entry_indent(text: str) -> str:
    match = re.search(r"(?m)^( *)- disease:", text)
    return match.group(1) if match else "  "


def _plan_env(
    root: Path, spec: ServiceSpec, edited: dict[PurePosixPath, str], notes: list[str]
) -> None:
    if not (root / ENV_FILE).is_file():
        notes.append(f"{ENV_FILE} not found: the {spec.prefix}* settings were not listed")
        return
    text = _read(root, ENV_FILE)
    if re.search(rf"(?m)^{spec.prefix}", text):
        raise ScaffoldError(f"{ENV_FILE} already has {spec.prefix}* settings")
    edited[ENV_FILE] = text.rstrip("\n") + "\n\n" + env_block(spec)


def env_block(spec: ServiceSpec) -> str:
    """Returns the service's block of .env.example, comments aligned like the rest."""
    p = spec.prefix
    rows = [
        (f"{p}PORT={spec.port}", f"gRPC port of the {spec.name} service"),
        (f"{p}BACKEND=embedded", "embedded (the model in process)"),
        (
            f"{p}MODEL_DIR=",
            f"model folder with model_card.json; default: {spec.module}/models/{spec.name}-demo",
        ),
        (f"{p}MAX_IMAGE_BYTES=20971520", "largest upload (20 MiB)"),
        (f"{p}MAX_IMAGE_PIXELS=40000000", "largest image (40 megapixels), from the header"),
    ]
    lines = [
        f"# --- {spec.name} service (prefix {p}; also every server and batcher setting above) ---"
    ]
    lines += [f"{setting.ljust(_ENV_COMMENT_COLUMN - 1)} # {comment}" for setting, comment in rows]
    return "\n".join(lines) + "\n"
