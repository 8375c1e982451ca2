"""Every overlay renders, validates against the Kubernetes schemas and holds together."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.k8s import policy
from tests.k8s.manifests import (
    AUTOSCALED,
    COMPONENTS,
    NAME,
    PART_OF,
    ROLE,
    ROLES,
    Objects,
    all_containers,
    env_of,
    main_container,
    of_kind,
    pod_spec,
)
from tests.k8s.render import (
    K8S_DIR,
    OVERLAYS,
    KubectlMissing,
    describe,
    find,
    label,
    render,
    render_with_components,
    validate,
)

QUEUE_DEPTH = K8S_DIR / "components" / "hpa-queue-depth"


@pytest.fixture(scope="module")
def queue_depth(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    """The GPU overlay with the queue-depth autoscaling component added."""
    try:
        return render_with_components(
            [K8S_DIR / "overlays" / "gpu"], [QUEUE_DEPTH], tmp_path_factory.mktemp("queue-depth")
        )
    except KubectlMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def test_it_fails_with_a_clear_message_when_kubectl_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(KubectlMissing, match="kubectl is not on PATH"):
        render(K8S_DIR / "overlays" / "cpu")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_it_renders_every_component_of_every_overlay(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    for name in COMPONENTS:
        for kind in ("ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"):
            find(objects, kind, name)
    for name in AUTOSCALED:
        target = find(objects, "HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
    find(objects, "Ingress", "web")
    find(objects, "Job", "web-migrate")
    assert {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"} == {
        "medimg"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, Objects], overlay: str
) -> None:
    assert validate(rendered[overlay]) == []


def test_it_reports_objects_that_break_the_schema(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["cpu"])
    main_container(find(objects, "Deployment", "skin"))["readinessProbe"]["grpcc"] = {}
    find(objects, "HorizontalPodAutoscaler", "mri")["apiVersion"] = "autoscaling/v9"

    errors = validate(objects)

    assert len(errors) == 2
    assert errors[0].startswith("Deployment/skin: spec.template.spec.containers.0.readinessProbe")
    assert "HorizontalPodAutoscaler/mri" in errors[1]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_and_pod_carries_the_medimg_labels(
    rendered: dict[str, Objects], overlay: str
) -> None:
    for obj in rendered[overlay]:
        assert label(obj, PART_OF) == "medimg", describe(obj)
        assert label(obj, NAME), describe(obj)
    for owner, template in policy.pod_templates(rendered[overlay]):
        labels = template["metadata"]["labels"]
        assert labels[NAME] == label(owner, NAME), describe(owner)
        assert labels[PART_OF] == "medimg", describe(owner)
        assert labels[ROLE] in ROLES, describe(owner)
        assert labels[ROLE] == label(owner, ROLE), describe(owner)
    for name, role in COMPONENTS.items():
        assert label(find(rendered[overlay], "Deployment", name), ROLE) == role


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_configmap_a_pod_uses_is_rendered(rendered: dict[str, Objects], overlay: str) -> None:
    names = {obj["metadata"]["name"] for obj in of_kind(rendered[overlay], "ConfigMap")}
    for obj, template in policy.pod_templates(rendered[overlay]):
        used = [
            v["configMap"]["name"] for v in template["spec"].get("volumes", []) if "configMap" in v
        ]
        for _, container in policy.containers(template):
            used += [
                e["configMapRef"]["name"]
                for e in container.get("envFrom", [])
                if "configMapRef" in e
            ]
        assert set(used) <= names, describe(obj)


def _secrets_used(objects: Objects) -> set[str]:
    used = set()
    for _, template in policy.pod_templates(objects):
        used |= {
            v["secret"]["secretName"] for v in template["spec"].get("volumes", []) if "secret" in v
        }
        for _, container in policy.containers(template):
            for item in container.get("env", []):
                reference = item.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    used.add(reference["name"])
    for ingress in of_kind(objects, "Ingress"):
        used |= {tls["secretName"] for tls in ingress["spec"].get("tls", [])}
    return used


def test_no_secret_is_committed_and_every_one_used_is_documented(
    rendered: dict[str, Objects],
) -> None:
    readme = (K8S_DIR / "README.md").read_text()
    for overlay in OVERLAYS:
        assert of_kind(rendered[overlay], "Secret") == []
        used = _secrets_used(rendered[overlay])
        assert used, overlay
        for name in used:
            assert f"kubectl -n medimg create secret generic {name}" in readme or (
                f"kubectl -n medimg create secret tls {name}" in readme
            ), name


def test_the_cpu_overlay_runs_one_of_everything_with_datastores_in_the_cluster(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["cpu"]
    for obj in of_kind(objects, "Deployment") + of_kind(objects, "StatefulSet"):
        assert obj["spec"].get("replicas", 1) == 1, describe(obj)
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] == 1, describe(hpa)
    assert {describe(o) for o in of_kind(objects, "StatefulSet")} == {
        "StatefulSet/postgres",
        "StatefulSet/redis",
    }
    assert (
        main_container(find(objects, "Deployment", "tfserving"))["image"]
        == "tensorflow/serving:2.19.0"
    )
    assert (
        main_container(find(objects, "Deployment", "torchserve"))["image"]
        == "pytorch/torchserve:0.12.0-cpu"
    )
    web = env_of(main_container(find(objects, "Deployment", "web")))
    assert web["DATABASE_URL"]["value"].endswith("@postgres:5432/medimg")
    assert web["REDIS_URL"]["value"].endswith("@redis:6379/0")


def test_the_gpu_overlay_reads_datastore_urls_from_a_secret_and_scales_out(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["gpu"]
    assert of_kind(objects, "StatefulSet") == []
    for name in ("web", "web-migrate"):
        kind = "Job" if name == "web-migrate" else "Deployment"
        for container in all_containers(find(objects, kind, name)):
            reference = env_of(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert reference == {"name": "web-datastores", "key": "database-url"}
    for name in ("tfserving", "torchserve"):
        deployment = find(objects, "Deployment", name)
        assert main_container(deployment)["image"].endswith("-gpu")
        assert pod_spec(deployment)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {t["key"] for t in pod_spec(deployment)["tolerations"]} == {"nvidia.com/gpu"}
    for name in ("skin", "mri"):
        assert find(objects, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] > 1
    assert find(objects, "Deployment", "gateway")["spec"]["replicas"] > 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_scaled_by_an_autoscaler_leave_the_replica_count_to_it(
    rendered: dict[str, Objects], overlay: str
) -> None:
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in of_kind(rendered[overlay], "HorizontalPodAutoscaler")
    }
    assert set(AUTOSCALED) <= scaled
    for deployment in of_kind(rendered[overlay], "Deployment"):
        has_replicas = "replicas" in deployment["spec"]
        assert has_replicas != (deployment["metadata"]["name"] in scaled), describe(deployment)


def test_the_queue_depth_variant_renders_validates_and_scales_services_on_pod_metrics(
    queue_depth: Objects,
) -> None:
    assert validate(queue_depth) == []
    assert policy.check(queue_depth, policy.rules_for("gpu")) == []
    for name, metric in (
        ("skin", "medimg_batcher_queue_depth"),
        ("mri", "medimg_series_in_progress"),
    ):
        metrics = find(queue_depth, "HorizontalPodAutoscaler", name)["spec"]["metrics"]
        assert [m["type"] for m in metrics] == ["Pods", "Resource"]
        assert metrics[0]["pods"]["metric"]["name"] == metric


def test_the_adapter_rules_serve_the_metrics_the_queue_depth_hpas_use(queue_depth: Objects) -> None:
    rules = yaml.safe_load((QUEUE_DEPTH / "prometheus-adapter-rules.yaml").read_text())
    served = {rule["name"]["as"] for rule in rules["rules"]["custom"]}
    used = {
        metric["pods"]["metric"]["name"]
        for hpa in of_kind(queue_depth, "HorizontalPodAutoscaler")
        for metric in hpa["spec"]["metrics"]
        if metric["type"] == "Pods"
    }
    assert used == served
    # The series the rules read are the ones servicekit and mri_service export (whichever
    # of mri_service's modules defines its gauge).
    root = K8S_DIR.parent
    files = [root / "servicekit" / "metrics.py", *sorted((root / "mri_service").glob("*.py"))]
    source = "".join(path.read_text() for path in files)
    for rule in rules["rules"]["custom"]:
        exported = rule["name"]["matches"].strip("^$").removesuffix("_sum")
        assert f'"{exported}"' in source
