"""Both overlays pass every policy rule, and each rule reports a violation once it is broken."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.k8s import policy
from tests.k8s.render import OVERLAYS, Manifest, find

Objects = list[Manifest]


def _pod_spec(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, kind, name)["spec"]["template"]["spec"]
    return spec


def _container(objects: Objects, name: str, kind: str = "Deployment") -> dict[str, Any]:
    """The main container of the workload `name` that bears its name."""
    for container in _pod_spec(objects, kind, name)["containers"]:
        if container["name"] == name:
            result: dict[str, Any] = container
            return result
    raise LookupError(f"{kind}/{name} has no container {name}")


def _init_container(objects: Objects, workload: str, name: str) -> dict[str, Any]:
    for container in _pod_spec(objects, "Deployment", workload)["initContainers"]:
        if container["name"] == name:
            result: dict[str, Any] = container
            return result
    raise LookupError(f"Deployment/{workload} has no init container {name}")


def _remove(objects: Objects, kind: str, name: str) -> None:
    objects.remove(find(objects, kind, name))


@dataclass(frozen=True)
class Breakage:
    """One way to break one rule: what to do to an overlay's objects, and what must be said."""

    rule: policy.Rule
    overlay: str
    breaks: Callable[[Objects], None]
    expected: str  # a fragment of the violation the rule must report

    def __str__(self) -> str:
        return f"{self.rule.__name__}-{self.expected}"


def _set(
    getter: Callable[[Objects], dict[str, Any]], key: str, value: object
) -> Callable[[Objects], None]:
    def breaks(objects: Objects) -> None:
        getter(objects)[key] = value

    return breaks


def _security(name: str, kind: str = "Deployment") -> Callable[[Objects], dict[str, Any]]:
    def getter(objects: Objects) -> dict[str, Any]:
        security: dict[str, Any] = _container(objects, name, kind)["securityContext"]
        return security

    return getter


def _delete_limit(objects: Objects) -> None:
    del _container(objects, "gateway")["resources"]["limits"]["memory"]


def _delete_init_request(objects: Objects) -> None:
    del _init_container(objects, "tfserving", "skin-model")["resources"]["requests"]["cpu"]


def _delete_readiness(objects: Objects) -> None:
    del _container(objects, "skin")["readinessProbe"]


def _delete_statefulset_liveness(objects: Objects) -> None:
    del _container(objects, "postgres", "StatefulSet")["livenessProbe"]


def _drop_non_root_everywhere(objects: Objects) -> None:
    del _container(objects, "gateway")["securityContext"]["runAsNonRoot"]
    del _pod_spec(objects, "Deployment", "gateway")["securityContext"]["runAsNonRoot"]


def _drop_non_root_from_init(objects: Objects) -> None:
    del _init_container(objects, "web", "wait-for-migrations")["securityContext"]["runAsNonRoot"]
    del _pod_spec(objects, "Deployment", "web")["securityContext"]["runAsNonRoot"]


def _add_capability(objects: Objects) -> None:
    _container(objects, "skin")["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]


def _keep_capabilities(objects: Objects) -> None:
    del _container(objects, "mri")["securityContext"]["capabilities"]["drop"]


def _drop_seccomp(objects: Objects) -> None:
    del _pod_spec(objects, "Deployment", "gateway")["securityContext"]["seccompProfile"]


def _remove_mri_budget(objects: Objects) -> None:
    _remove(objects, "PodDisruptionBudget", "mri")


def _budget_selects_other_pods(objects: Objects) -> None:
    budget = find(objects, "PodDisruptionBudget", "web")
    budget["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": "webb"}}


def _remove_redis_budget(objects: Objects) -> None:
    _remove(objects, "PodDisruptionBudget", "redis")


def _image(name: str, image: str) -> Callable[[Objects], None]:
    def breaks(objects: Objects) -> None:
        _container(objects, name)["image"] = image

    return breaks


def _add_load_balancer(objects: Objects) -> None:
    service = copy.deepcopy(find(objects, "Service", "web"))
    service["metadata"]["name"] = "web-public"
    service["spec"]["type"] = "LoadBalancer"
    objects.append(service)


def _gpu(name: str) -> Callable[[Objects], None]:
    def breaks(objects: Objects) -> None:
        resources = _container(objects, name)["resources"]
        resources["limits"]["nvidia.com/gpu"] = 1

    return breaks


def _no_gpu_for_torchserve(objects: Objects) -> None:
    resources = _container(objects, "torchserve")["resources"]
    del resources["requests"]["nvidia.com/gpu"]
    del resources["limits"]["nvidia.com/gpu"]


BREAKAGES = (
    Breakage(policy.resources_are_set, "gpu", _delete_limit, "gateway: no limits.memory"),
    Breakage(policy.resources_are_set, "cpu", _delete_init_request, "skin-model: no requests.cpu"),
    Breakage(policy.probes_are_set, "gpu", _delete_readiness, "skin: no readinessProbe"),
    Breakage(
        policy.probes_are_set, "cpu", _delete_statefulset_liveness, "postgres: no livenessProbe"
    ),
    Breakage(policy.runs_as_non_root, "gpu", _set(_security("mri"), "runAsNonRoot", False), "mri"),
    Breakage(policy.runs_as_non_root, "cpu", _set(_security("web"), "runAsUser", 0), "is 0"),
    Breakage(policy.runs_as_non_root, "gpu", _drop_non_root_everywhere, "gateway: runAsNonRoot"),
    Breakage(policy.runs_as_non_root, "cpu", _drop_non_root_from_init, "wait-for-migrations"),
    Breakage(
        policy.root_filesystem_is_read_only,
        "cpu",
        _set(_security("web"), "readOnlyRootFilesystem", False),
        "web: readOnlyRootFilesystem",
    ),
    Breakage(
        policy.privilege_escalation_is_off,
        "gpu",
        _set(_security("torchserve"), "allowPrivilegeEscalation", True),
        "torchserve: allowPrivilegeEscalation",
    ),
    Breakage(
        policy.privilege_escalation_is_off,
        "cpu",
        _set(_security("gateway"), "privileged", True),
        "gateway: privileged",
    ),
    Breakage(policy.capabilities_are_dropped, "gpu", _add_capability, "['NET_ADMIN']"),
    Breakage(policy.capabilities_are_dropped, "cpu", _keep_capabilities, "mri: capabilities"),
    Breakage(policy.seccomp_is_runtime_default, "gpu", _drop_seccomp, "gateway: no seccomp"),
    Breakage(policy.workloads_have_disruption_budgets, "gpu", _remove_mri_budget, "mri"),
    Breakage(policy.workloads_have_disruption_budgets, "cpu", _budget_selects_other_pods, "web"),
    Breakage(
        policy.workloads_have_disruption_budgets,
        "cpu",
        _remove_redis_budget,
        "StatefulSet/redis",
    ),
    Breakage(policy.images_are_pinned, "gpu", _image("web", "medimg/web:latest"), "web:latest"),
    Breakage(policy.images_are_pinned, "cpu", _image("skin", "medimg/skin"), "medimg/skin'"),
    Breakage(
        policy.images_are_pinned,
        "cpu",
        _image("mri", "registry.local:5000/medimg/mri"),
        "5000/medimg/mri'",
    ),
    Breakage(policy.no_load_balancer_services, "gpu", _add_load_balancer, "web-public"),
    Breakage(policy.gpus_only_for_model_servers, "gpu", _gpu("gateway"), "not a model server"),
    Breakage(
        policy.gpus_only_for_model_servers,
        "gpu",
        _no_gpu_for_torchserve,
        "Deployment/torchserve: a model server that asks for no GPU",
    ),
    Breakage(policy.no_gpus, "cpu", _gpu("tfserving"), "tfserving: asks for nvidia.com/gpu"),
)


@pytest.mark.parametrize(
    ("overlay", "rule"),
    [(overlay, rule) for overlay in OVERLAYS for rule in policy.rules_for(overlay)],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_it_passes_every_rule_in_every_overlay(
    rendered: dict[str, Objects], overlay: str, rule: policy.Rule
) -> None:
    assert rule(rendered[overlay]) == []


@pytest.mark.parametrize("breakage", BREAKAGES, ids=str)
def test_it_reports_a_broken_rule(rendered: dict[str, Objects], breakage: Breakage) -> None:
    objects = copy.deepcopy(rendered[breakage.overlay])
    breakage.breaks(objects)

    violations = breakage.rule(objects)

    assert any(breakage.expected in violation for violation in violations), violations


def test_every_rule_has_a_test_that_breaks_it() -> None:
    every_rule = {*policy.COMMON_RULES, *policy.GPU_RULES.values()}
    assert every_rule == {breakage.rule for breakage in BREAKAGES}


def test_it_names_each_violation_after_its_rule(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["cpu"])
    _gpu("tfserving")(objects)
    _image("web", "medimg/web:latest")(objects)

    violations = policy.check(objects, policy.rules_for("cpu"))

    assert len(violations) == 2
    assert violations[0].startswith("images_are_pinned: Deployment/web container web")
    assert violations[1].startswith("no_gpus: Deployment/tfserving container tfserving")


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("medimg/web:0.1.0", True),
        ("tensorflow/serving:2.19.0-gpu", True),
        ("registry.local:5000/medimg/web:0.1.0", True),
        ("postgres@sha256:" + "ab" * 32, True),
        ("medimg/web:0.1.0@sha256:" + "0f" * 32, True),
        ("medimg/web", False),
        ("medimg/web:latest", False),
        ("medimg/web:", False),
        ("registry.local:5000/medimg/web", False),
        ("medimg/web@sha256:abc", False),
        ("", False),
    ],
)
def test_it_tells_a_pinned_image_from_a_floating_one(image: str, pinned: bool) -> None:
    assert policy.image_is_pinned(image) is pinned


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({"matchLabels": {"app": "web"}}, True),
        ({"matchLabels": {"app": "gateway"}}, False),
        ({}, True),
        (None, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, True),
    ],
)
def test_it_matches_label_selectors_as_kubernetes_does(
    selector: dict[str, Any] | None, selected: bool
) -> None:
    assert policy.selector_matches(selector, {"app": "web", "role": "web"}) is selected
