"""What the k8s manifest tests share: the components, their labels, and readers of a render."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from tests.k8s.render import Manifest

Objects = list[Manifest]

# Each component's Deployment and its medimg.io/role.
COMPONENTS = {
    "gateway": "gateway",
    "skin": "service",
    "mri": "service",
    "trainer": "trainer",
    "tfserving": "model-server",
    "torchserve": "model-server",
    "web": "web",
    "dicom-receiver": "dicom-receiver",
}
AUTOSCALED = ("skin", "mri", "tfserving", "torchserve")
GRPC_SERVICES = ("gateway", "skin", "mri", "trainer", "tfserving", "torchserve")
ROLES = {"web", "gateway", "service", "trainer", "model-server", "datastore", "dicom-receiver"}
NAME, PART_OF, ROLE = "app.kubernetes.io/name", "app.kubernetes.io/part-of", "medimg.io/role"
# The web tier's image, and the Celery processes (web-worker, web-beat) that run it too.
WEB_IMAGE = "medimg/web:0.1.0"
CELERY_APP = ["python", "-m", "celery", "-A", "web.config.celery"]
WORKERS = {"web-worker": "worker", "web-beat": "beat"}  # Deployment: its Celery command


def of_kind(objects: Objects, kind: str) -> list[Manifest]:
    """The objects of one kind."""
    return [obj for obj in objects if obj["kind"] == kind]


def generated_config(objects: Objects, name: str) -> dict[str, str]:
    """The data of the ConfigMap kustomize generated from `name` (its name has a hash suffix)."""
    for obj in of_kind(objects, "ConfigMap"):
        if re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", obj["metadata"]["name"]):
            data: dict[str, str] = obj["data"]
            return data
    raise LookupError(f"no ConfigMap generated from {name}")


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload's template."""
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def all_containers(obj: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A workload's containers, init containers first."""
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def main_container(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A workload's first container: the one that runs its program."""
    container: dict[str, Any] = pod_spec(obj)["containers"][0]
    return container


def properties(text: str) -> dict[str, str]:
    """The key=value pairs of a Java properties file (TorchServe's config)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def env_of(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries, by name."""
    return {item["name"]: item for item in container.get("env", [])}


def effective_env(objects: Objects, container: Mapping[str, Any]) -> dict[str, str]:
    """A container's environment: its ConfigMaps, then env (a Secret as secret:<name>)."""
    merged: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        merged |= next(
            obj["data"] for obj in of_kind(objects, "ConfigMap") if obj["metadata"]["name"] == name
        )
    for item in container.get("env", []):
        reference = item.get("valueFrom", {}).get("secretKeyRef")
        merged[item["name"]] = f"secret:{reference['name']}" if reference else item["value"]
    return merged
