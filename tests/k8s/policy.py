"""Policy rules over rendered Kubernetes objects: one function per rule, each listing violations.

Every rule takes the objects one overlay renders (`render.render_overlay`) and returns a
list of violation strings, empty when the rule holds. Rules read what they need and
nothing else, so a test (or the plug-in test, on a copy of the repository) can run any of
them on any list of objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

Objects = Sequence[Mapping[str, Any]]
Rule = Callable[[Objects], list[str]]

ROLE_LABEL = "medimg.io/role"
MODEL_SERVER_ROLE = "model-server"
# Kinds whose pod template the rules read, and where it sits.
_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
# Kinds that keep pods running, which must have probes and a disruption budget.
_SERVED_KINDS = ("Deployment", "StatefulSet")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


# --- reading objects -------------------------------------------------------------------


def _name(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def _namespace(obj: Mapping[str, Any]) -> str | None:
    namespace = (obj.get("metadata") or {}).get("namespace")
    return None if namespace is None else str(namespace)


def pod_templates(objects: Objects) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Yields (object, pod template) for every object that makes pods."""
    for obj in objects:
        kind = obj.get("kind")
        spec = obj.get("spec") or {}
        if kind in _TEMPLATE_KINDS:
            yield obj, spec.get("template") or {}
        elif kind == "CronJob":
            yield obj, ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        elif kind == "Pod":
            yield obj, {"metadata": obj.get("metadata") or {}, "spec": spec}


def containers(
    template: Mapping[str, Any], *, init: bool = True
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yields (description, container) for a pod template's containers, init ones first."""
    spec = template.get("spec") or {}
    sections = ("initContainers", "containers") if init else ("containers",)
    for section in sections:
        for container in spec.get(section) or []:
            kind = "init container" if section == "initContainers" else "container"
            yield f"{kind} {container.get('name')}", container


def _where(obj: Mapping[str, Any], container: str) -> str:
    return f"{_name(obj)} {container}"


def _security(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return container.get("securityContext") or {}


def _pod_security(template: Mapping[str, Any]) -> Mapping[str, Any]:
    return (template.get("spec") or {}).get("securityContext") or {}


def _template_labels(template: Mapping[str, Any]) -> Mapping[str, Any]:
    return (template.get("metadata") or {}).get("labels") or {}


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, Any]) -> bool:
    """Returns True when a label selector (matchLabels and matchExpressions) selects labels.

    A missing selector selects nothing; an empty one selects everything (as in policy/v1).
    """
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def gpu_resources(container: Mapping[str, Any]) -> list[str]:
    """Returns the GPU resources (`nvidia.com/gpu`, `amd.com/gpu`, ...) a container asks for."""
    resources = container.get("resources") or {}
    asked = set()
    for section in ("requests", "limits"):
        for name, amount in (resources.get(section) or {}).items():
            if str(name).endswith("/gpu") and str(amount) not in ("0", ""):
                asked.add(str(name))
    return sorted(asked)


def image_is_pinned(image: str) -> bool:
    """Returns True for an image named with a sha256 digest, or a tag other than `latest`."""
    if "@" in image:
        return bool(_DIGEST.match(image.split("@", 1)[1]))
    last_part = image.rsplit("/", 1)[-1]  # a registry's port is not a tag
    if ":" not in last_part:
        return False
    tag = last_part.split(":", 1)[1]
    return tag != "" and tag != "latest"


# --- the rules -------------------------------------------------------------------------


def resources_are_set(objects: Objects) -> list[str]:
    """Every container, init containers included, has cpu and memory requests and limits."""
    violations = []
    for obj, template in pod_templates(objects):
        for where, container in containers(template):
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(section) or {}):
                        violations.append(f"{_where(obj, where)}: no {section}.{resource}")
    return violations


def probes_are_set(objects: Objects) -> list[str]:
    """Every main container of a Deployment or StatefulSet has readiness and liveness probes."""
    violations = []
    for obj, template in pod_templates(objects):
        if obj.get("kind") not in _SERVED_KINDS:
            continue
        for where, container in containers(template, init=False):
            for probe in ("readinessProbe", "livenessProbe"):
                if not container.get(probe):
                    violations.append(f"{_where(obj, where)}: no {probe}")
    return violations


def runs_as_non_root(objects: Objects) -> list[str]:
    """Every container runs with runAsNonRoot true (its own or the pod's) and never as uid 0."""
    violations = []
    for obj, template in pod_templates(objects):
        pod = _pod_security(template)
        for where, container in containers(template):
            own = _security(container)
            non_root = own.get("runAsNonRoot", pod.get("runAsNonRoot"))
            user = own.get("runAsUser", pod.get("runAsUser"))
            if non_root is not True:
                violations.append(f"{_where(obj, where)}: runAsNonRoot is not true")
            if user == 0:
                violations.append(f"{_where(obj, where)}: runAsUser is 0 (root)")
    return violations


def root_filesystem_is_read_only(objects: Objects) -> list[str]:
    """Every container has readOnlyRootFilesystem true."""
    return [
        f"{_where(obj, where)}: readOnlyRootFilesystem is not true"
        for obj, template in pod_templates(objects)
        for where, container in containers(template)
        if _security(container).get("readOnlyRootFilesystem") is not True
    ]


def privilege_escalation_is_off(objects: Objects) -> list[str]:
    """Every container sets allowPrivilegeEscalation false and is not privileged."""
    violations = []
    for obj, template in pod_templates(objects):
        for where, container in containers(template):
            security = _security(container)
            if security.get("allowPrivilegeEscalation") is not False:
                violations.append(f"{_where(obj, where)}: allowPrivilegeEscalation is not false")
            if security.get("privileged") is True:
                violations.append(f"{_where(obj, where)}: privileged")
    return violations


def capabilities_are_dropped(objects: Objects) -> list[str]:
    """Every container drops ALL capabilities and adds none."""
    violations = []
    for obj, template in pod_templates(objects):
        for where, container in containers(template):
            capabilities = _security(container).get("capabilities") or {}
            if "ALL" not in (capabilities.get("drop") or []):
                violations.append(f"{_where(obj, where)}: capabilities do not drop ALL")
            added = capabilities.get("add") or []
            if added:
                violations.append(f"{_where(obj, where)}: adds capabilities {sorted(added)}")
    return violations


def seccomp_is_runtime_default(objects: Objects) -> list[str]:
    """Every container runs under a seccomp profile (RuntimeDefault or Localhost)."""
    violations = []
    for obj, template in pod_templates(objects):
        pod_profile = _pod_security(template).get("seccompProfile") or {}
        for where, container in containers(template):
            profile = _security(container).get("seccompProfile") or pod_profile
            if profile.get("type") not in ("RuntimeDefault", "Localhost"):
                violations.append(f"{_where(obj, where)}: no seccomp profile")
    return violations


def workloads_have_disruption_budgets(objects: Objects) -> list[str]:
    """Every Deployment and StatefulSet has a PodDisruptionBudget selecting its pods."""
    budgets = [obj for obj in objects if obj.get("kind") == "PodDisruptionBudget"]
    violations = []
    for obj, template in pod_templates(objects):
        if obj.get("kind") not in _SERVED_KINDS:
            continue
        labels = _template_labels(template)
        if not any(
            _namespace(budget) == _namespace(obj)
            and selector_matches((budget.get("spec") or {}).get("selector"), labels)
            for budget in budgets
        ):
            violations.append(f"{_name(obj)}: no PodDisruptionBudget selects its pods")
    return violations


def images_are_pinned(objects: Objects) -> list[str]:
    """Every image is pinned by a tag other than `latest` or by a sha256 digest."""
    return [
        f"{_where(obj, where)}: image {container.get('image')!r} is not pinned"
        for obj, template in pod_templates(objects)
        for where, container in containers(template)
        if not image_is_pinned(str(container.get("image") or ""))
    ]


def no_load_balancer_services(objects: Objects) -> list[str]:
    """No Service is of type LoadBalancer: traffic enters through the Ingress only."""
    return [
        f"{_name(obj)}: type LoadBalancer"
        for obj in objects
        if obj.get("kind") == "Service" and (obj.get("spec") or {}).get("type") == "LoadBalancer"
    ]


def gpus_only_for_model_servers(objects: Objects) -> list[str]:
    """Model servers (role model-server) ask for a GPU, and nothing else does."""
    violations = []
    for obj, template in pod_templates(objects):
        model_server = _template_labels(template).get(ROLE_LABEL) == MODEL_SERVER_ROLE
        asked = {where: gpu_resources(c) for where, c in containers(template)}
        if model_server and not any(asked.values()):
            violations.append(f"{_name(obj)}: a model server that asks for no GPU")
        if not model_server:
            violations += [
                f"{_where(obj, where)}: asks for {', '.join(gpus)} but is not a model server"
                for where, gpus in asked.items()
                if gpus
            ]
    return violations


def no_gpus(objects: Objects) -> list[str]:
    """No container asks for a GPU (the CPU overlay)."""
    return [
        f"{_where(obj, where)}: asks for {', '.join(gpu_resources(container))}"
        for obj, template in pod_templates(objects)
        for where, container in containers(template)
        if gpu_resources(container)
    ]


COMMON_RULES: tuple[Rule, ...] = (
    resources_are_set,
    probes_are_set,
    runs_as_non_root,
    root_filesystem_is_read_only,
    privilege_escalation_is_off,
    capabilities_are_dropped,
    seccomp_is_runtime_default,
    workloads_have_disruption_budgets,
    images_are_pinned,
    no_load_balancer_services,
)
GPU_RULES: Mapping[str, Rule] = {"cpu": no_gpus, "gpu": gpus_only_for_model_servers}


def rules_for(overlay: str) -> tuple[Rule, ...]:
    """Returns every rule an overlay must pass: the common ones and its GPU rule."""
    return (*COMMON_RULES, GPU_RULES[overlay])


def check(objects: Objects, rules: Sequence[Rule]) -> list[str]:
    """Returns the violations of every rule, each prefixed with the rule's name."""
    return [f"{rule.__name__}: {violation}" for rule in rules for violation in rule(objects)]
