"""Every overlay renders, validates against the Kubernetes schemas and holds together."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.registry import RouteKind, parse_routes_document
from gateway.settings import GatewaySettings
from tests.k8s import policy
from tests.k8s.network import ingress_allowed
from tests.k8s.render import (
    K8S_DIR,
    OVERLAYS,
    KubectlMissing,
    Manifest,
    describe,
    find,
    label,
    render,
    render_with_components,
    validate,
)
from trainer_service.settings import RETIRED_VARIABLES
from trainer_service.settings import Settings as TrainerSettings
from web.gateway_client import GatewayConfig

Objects = list[Manifest]

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
QUEUE_DEPTH = K8S_DIR / "components" / "hpa-queue-depth"


def _of_kind(objects: Objects, kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def _config(objects: Objects, name: str) -> dict[str, str]:
    """The data of the ConfigMap kustomize generated from `name` (its name has a hash suffix)."""
    for obj in _of_kind(objects, "ConfigMap"):
        if re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", obj["metadata"]["name"]):
            data: dict[str, str] = obj["data"]
            return data
    raise LookupError(f"no ConfigMap generated from {name}")


def _pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def _all_containers(obj: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = _pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def _main_container(obj: Mapping[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _pod_spec(obj)["containers"][0]
    return container


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def _env(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


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
    _main_container(find(objects, "Deployment", "skin"))["readinessProbe"]["grpcc"] = {}
    find(objects, "HorizontalPodAutoscaler", "mri")["apiVersion"] = "autoscaling/v9"

    errors = validate(objects)

    assert len(errors) == 2
    assert errors[0].startswith("Deployment/skin: spec.template.spec.containers.0.readinessProbe")
    assert "HorizontalPodAutoscaler/mri" in errors[1]


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
        for hpa in _of_kind(queue_depth, "HorizontalPodAutoscaler")
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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_are_headless_and_name_their_port_grpc(
    rendered: dict[str, Objects], overlay: str
) -> None:
    for name in GRPC_SERVICES:
        spec = find(rendered[overlay], "Service", name)["spec"]
        assert spec.get("clusterIP") == "None", name
        assert [port["name"] for port in spec["ports"]] == ["grpc"], name
        assert spec["ports"][0]["targetPort"] == "grpc", name


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
def test_every_service_selects_pods_of_the_render(
    rendered: dict[str, Objects], overlay: str
) -> None:
    templates = [template for _, template in policy.pod_templates(rendered[overlay])]
    for service in _of_kind(rendered[overlay], "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        matching = [
            t for t in templates if policy.selector_matches(selector, t["metadata"]["labels"])
        ]
        assert len(matching) == 1, describe(service)
        ports = {p["name"] for c in matching[0]["spec"]["containers"] for p in c.get("ports", [])}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_allow_by_role_only(
    rendered: dict[str, Objects], overlay: str
) -> None:
    policies = {
        obj["metadata"]["name"]: obj["spec"] for obj in _of_kind(rendered[overlay], "NetworkPolicy")
    }
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    allowed = set()
    for spec in policies.values():
        target = spec["podSelector"].get("matchLabels", {})
        assert set(target) <= {ROLE}, spec
        for rule in spec.get("ingress", []):
            for peer in rule["from"]:
                if "namespaceSelector" in peer or "ipBlock" in peer:
                    continue  # from outside the namespace (tests/k8s/test_dicom_receiver.py)
                source = peer["podSelector"]["matchLabels"]
                assert set(source) == {ROLE}, spec
                allowed.add((source[ROLE], target[ROLE]))
    assert allowed == {
        ("web", "gateway"),
        ("gateway", "service"),
        # One way only: the gateway asks the trainer for its published models.
        ("gateway", "trainer"),
        ("service", "model-server"),
        ("web", "datastore"),
        # components/dicom-receiver: an in-cluster PACS sends to it; it calls the gateway.
        ("pacs", "dicom-receiver"),
        ("dicom-receiver", "gateway"),
    }
    # Services, the trainer and model servers are reached by the port name: each must have it.
    for obj, template in policy.pod_templates(rendered[overlay]):
        if template["metadata"]["labels"][ROLE] in ("service", "trainer", "model-server"):
            names = [p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
            assert "grpc" in names, describe(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_gateway_route_points_at_a_grpc_service_of_the_render(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    routes = parse_routes_document(
        yaml.safe_load(_config(objects, "gateway-registry")["registry.yaml"])
    )
    assert {"skin", "mri", "trainer"} <= set(routes)
    assert [r.disease for r in routes.values() if r.kind is RouteKind.TRAINER] == ["trainer"]
    mounted = _config(objects, "gateway-config")["GATEWAY_REGISTRY_FILE"]
    mounts = _main_container(find(objects, "Deployment", "gateway"))["volumeMounts"]
    registry = next(mount for mount in mounts if mount["name"] == "registry")
    assert f"{registry['mountPath']}/registry.yaml" == mounted
    for route in routes.values():
        for address in route.addresses:
            host, port = address.rsplit(":", 1)
            service = find(objects, "Service", host)
            assert service["spec"]["clusterIP"] == "None", address
            assert int(port) in [p["port"] for p in service["spec"]["ports"]], address


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_listens_in_the_pod_and_calls_its_model_server_service(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    for name, prefix, setting, server in (
        ("skin", "SKIN_", "SKIN_TFSERVING_ADDRESS", "tfserving"),
        ("mri", "MRI_", "MRI_TORCHSERVE_ADDRESS", "torchserve"),
    ):
        config = _config(objects, f"{name}-config")
        assert config[f"{prefix}HOST"] == "0.0.0.0"
        assert config[f"{prefix}LOG_FORMAT"] == "json"
        assert config[f"{prefix}BACKEND"] == server
        port = int(config[f"{prefix}PORT"])
        container = _main_container(find(objects, "Deployment", name))
        assert container["readinessProbe"]["grpc"]["port"] == port
        assert container["livenessProbe"]["grpc"]["port"] == port
        host, server_port = config[setting].rsplit(":", 1)
        assert host == server
        assert int(server_port) in [
            p["port"] for p in find(objects, "Service", server)["spec"]["ports"]
        ]
    assert _config(objects, "gateway-config")["GATEWAY_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_termination_grace_period_covers_the_drain_delay_and_the_grace(
    rendered: dict[str, Objects], overlay: str
) -> None:
    for name, prefix in (
        ("gateway", "GATEWAY_"),
        ("skin", "SKIN_"),
        ("mri", "MRI_"),
        ("trainer", "TRAINER_"),
    ):
        config = _config(rendered[overlay], f"{name}-config")
        needed = float(config[f"{prefix}DRAIN_DELAY_SECONDS"]) + float(
            config[f"{prefix}GRACE_SECONDS"]
        )
        period = _pod_spec(find(rendered[overlay], "Deployment", name))[
            "terminationGracePeriodSeconds"
        ]
        assert needed >= 5
        assert period >= needed + 5, name
        # Connections are recycled where clients balance over replicas (the trainer has one).
        if name != "trainer":
            assert float(config[f"{prefix}MAX_CONNECTION_AGE_SECONDS"]) > 0, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_scaled_by_an_autoscaler_leave_the_replica_count_to_it(
    rendered: dict[str, Objects], overlay: str
) -> None:
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in _of_kind(rendered[overlay], "HorizontalPodAutoscaler")
    }
    assert set(AUTOSCALED) <= scaled
    for deployment in _of_kind(rendered[overlay], "Deployment"):
        has_replicas = "replicas" in deployment["spec"]
        assert has_replicas != (deployment["metadata"]["name"] in scaled), describe(deployment)


def test_the_cpu_overlay_runs_one_of_everything_with_datastores_in_the_cluster(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["cpu"]
    for obj in _of_kind(objects, "Deployment") + _of_kind(objects, "StatefulSet"):
        assert obj["spec"].get("replicas", 1) == 1, describe(obj)
    for hpa in _of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] == 1, describe(hpa)
    assert {describe(o) for o in _of_kind(objects, "StatefulSet")} == {
        "StatefulSet/postgres",
        "StatefulSet/redis",
    }
    assert (
        _main_container(find(objects, "Deployment", "tfserving"))["image"]
        == "tensorflow/serving:2.19.0"
    )
    assert (
        _main_container(find(objects, "Deployment", "torchserve"))["image"]
        == "pytorch/torchserve:0.12.0-cpu"
    )
    web = _env(_main_container(find(objects, "Deployment", "web")))
    assert web["DATABASE_URL"]["value"].endswith("@postgres:5432/medimg")
    assert web["REDIS_URL"]["value"].endswith("@redis:6379/0")


def test_the_gpu_overlay_reads_datastore_urls_from_a_secret_and_scales_out(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["gpu"]
    assert _of_kind(objects, "StatefulSet") == []
    for name in ("web", "web-migrate"):
        kind = "Job" if name == "web-migrate" else "Deployment"
        for container in _all_containers(find(objects, kind, name)):
            reference = _env(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert reference == {"name": "web-datastores", "key": "database-url"}
    for name in ("tfserving", "torchserve"):
        deployment = find(objects, "Deployment", name)
        assert _main_container(deployment)["image"].endswith("-gpu")
        assert _pod_spec(deployment)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {t["key"] for t in _pod_spec(deployment)["tolerations"]} == {"nvidia.com/gpu"}
    for name in ("skin", "mri"):
        assert find(objects, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] > 1
    assert find(objects, "Deployment", "gateway")["spec"]["replicas"] > 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_torchserve_serves_both_models_without_tokens_and_takes_a_whole_batch(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    settings = _properties(_config(objects, "torchserve-config")["config.properties"])
    mri = _config(objects, "mri-config")
    batch_bytes = int(mri["MRI_BATCH_SLICES"]) * 3 * 128 * 128 * 4
    assert int(settings["max_request_size"]) >= 2 * batch_bytes
    assert settings["disable_token_authorization"] == "true"
    assert "MRI_TORCHSERVE_INFERENCE_KEY" not in mri
    assert settings["enable_model_api"] == "false"
    assert settings["load_models"] == "mri-single=mri-single.mar,mri-scantype=mri-scantype.mar"
    assert settings["model_store"] == "/home/model-server/model-store"
    assert settings["grpc_inference_address"] == "0.0.0.0"
    assert mri["MRI_TORCHSERVE_ADDRESS"] == f"torchserve:{settings['grpc_inference_port']}"
    assert settings["management_address"].startswith("http://127.0.0.1:")
    args = _main_container(find(objects, "Deployment", "torchserve"))["args"]
    assert args[-1] == "/home/model-server/config/config.properties"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tfserving_serves_the_skin_model_where_the_init_container_puts_it(
    rendered: dict[str, Objects], overlay: str
) -> None:
    deployment = find(rendered[overlay], "Deployment", "tfserving")
    args = _main_container(deployment)["args"]
    for arg in (
        "--model_name=skin",
        "--model_base_path=/models/skin",
        "--port=8500",
        "--rest_api_port=8501",
    ):
        assert arg in args
    init = _pod_spec(deployment)["initContainers"][0]
    assert init["image"] == "medimg/skin-model:0.1.0"
    assert init["command"][-1] == "/models/skin/"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_configmap_a_pod_uses_is_rendered(rendered: dict[str, Objects], overlay: str) -> None:
    names = {obj["metadata"]["name"] for obj in _of_kind(rendered[overlay], "ConfigMap")}
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
    for ingress in _of_kind(objects, "Ingress"):
        used |= {tls["secretName"] for tls in ingress["spec"].get("tls", [])}
    return used


def test_no_secret_is_committed_and_every_one_used_is_documented(
    rendered: dict[str, Objects],
) -> None:
    readme = (K8S_DIR / "README.md").read_text()
    for overlay in OVERLAYS:
        assert _of_kind(rendered[overlay], "Secret") == []
        used = _secrets_used(rendered[overlay])
        assert used, overlay
        for name in used:
            assert f"kubectl -n medimg create secret generic {name}" in readme or (
                f"kubectl -n medimg create secret tls {name}" in readme
            ), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_keeps_websockets_open_and_takes_an_mri_upload(
    rendered: dict[str, Objects], overlay: str
) -> None:
    ingress = find(rendered[overlay], "Ingress", "web")
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    body = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(body.removesuffix("m")) * 1024 * 1024 >= int(
        _config(rendered[overlay], "mri-config")["MRI_MAX_UPLOAD_BYTES"]
    )
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert ingress["spec"]["tls"][0]["hosts"] == hosts
    allowed = _config(rendered[overlay], "web-config")["ALLOWED_HOSTS"].split(",")
    assert set(hosts) <= set(allowed)
    assert "localhost" in allowed  # the Host header of the kubelet's probes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_before_web_pods_start(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    job = find(objects, "Job", "web-migrate")
    web = find(objects, "Deployment", "web")
    migrate = _main_container(job)
    assert migrate["command"] == ["python", "web/manage.py", "migrate", "--noinput"]
    assert migrate["image"] == _main_container(web)["image"] == "medimg/web:0.1.0"
    assert job["spec"]["backoffLimit"] > 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    for name in ("web", "web-worker"):
        wait = _pod_spec(find(objects, "Deployment", name))["initContainers"][0]
        assert "migrate --check" in wait["command"][-1], name
        assert wait["image"] == migrate["image"], name
        assert {"DATABASE_URL", "SECRET_KEY"} <= set(_env(wait)) & set(_env(migrate)), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_directories_the_services_write_are_writable_mounts(
    rendered: dict[str, Objects], overlay: str
) -> None:
    for name, setting in (("gateway", "GATEWAY_STATE_DIR"), ("mri", "MRI_SPOOL_DIR")):
        path = _config(rendered[overlay], f"{name}-config")[setting]
        deployment = find(rendered[overlay], "Deployment", name)
        mount = next(
            m for m in _main_container(deployment)["volumeMounts"] if m["mountPath"] == path
        )
        assert not mount.get("readOnly", False), setting
        volume = next(v for v in _pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
        assert "emptyDir" in volume, setting


# --- the web tier's series worker (web-worker, web-beat) and its shared media ---------------

WEB_IMAGE = "medimg/web:0.1.0"
CELERY_APP = ["python", "-m", "celery", "-A", "web.config.celery"]
WORKERS = {"web-worker": "worker", "web-beat": "beat"}  # Deployment: its Celery command


def _effective_env(objects: Objects, container: Mapping[str, Any]) -> dict[str, str]:
    """A container's environment: its ConfigMaps, then env (a Secret as secret:<name>)."""
    merged: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        merged |= next(
            obj["data"] for obj in _of_kind(objects, "ConfigMap") if obj["metadata"]["name"] == name
        )
    for item in container.get("env", []):
        reference = item.get("valueFrom", {}).get("secretKeyRef")
        merged[item["name"]] = f"secret:{reference['name']}" if reference else item["value"]
    return merged


def _web_image_containers(objects: Objects) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container, init ones included, that runs the web tier's code (its settings)."""
    for obj, template in policy.pod_templates(objects):
        for where, container in policy.containers(template):
            if container["image"] == WEB_IMAGE:
                yield f"{describe(obj)} {where}", container


def _media_mount(objects: Objects, name: str) -> tuple[str, str]:
    """The (mount path, claim name) of the volume a Deployment mounts at its WEB_MEDIA_ROOT."""
    deployment = find(objects, "Deployment", name)
    container = _main_container(deployment)
    root = _effective_env(objects, container)["WEB_MEDIA_ROOT"]
    mount = next((m for m in container["volumeMounts"] if m["mountPath"] == root), None)
    assert mount is not None, f"{name} mounts nothing at WEB_MEDIA_ROOT {root}"
    assert not mount.get("readOnly", False), name
    volume = next(v for v in _pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    return mount["mountPath"], volume["persistentVolumeClaim"]["claimName"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_series_jobs_run_in_celery_processes_of_the_web_image(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    web = _main_container(find(objects, "Deployment", "web"))
    for name, command in WORKERS.items():
        deployment = find(objects, "Deployment", name)
        container = _main_container(deployment)
        assert container["command"][: len(CELERY_APP) + 1] == [*CELERY_APP, command], name
        assert container["image"] == web["image"] == WEB_IMAGE
        assert container["envFrom"] == web["envFrom"], name
        assert _env(container)["SECRET_KEY"] == _env(web)["SECRET_KEY"], name
        assert "ports" not in container, name  # nothing connects to a worker
        find(objects, "PodDisruptionBudget", name)
    worker = find(objects, "Deployment", "web-worker")
    assert "--concurrency=1" in _main_container(worker)["command"]
    # Its health check asks the same app for this pod's node, by name.
    probe = _main_container(worker)["livenessProbe"]["exec"]["command"][-1]
    assert probe.startswith("exec " + " ".join(CELERY_APP) + " inspect ping")
    assert '--destination "celery@$HOSTNAME"' in probe
    beat = find(objects, "Deployment", "web-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_worker_finishes_its_job_before_it_is_killed(
    rendered: dict[str, Objects], overlay: str
) -> None:
    period = _pod_spec(find(rendered[overlay], "Deployment", "web-worker"))[
        "terminationGracePeriodSeconds"
    ]
    assert period >= GatewayConfig(address="gateway:50051").series_timeout_s + 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_beat_keeps_its_schedule_where_it_can_write_and_its_probes_read(
    rendered: dict[str, Objects], overlay: str
) -> None:
    beat = find(rendered[overlay], "Deployment", "web-beat")
    container = _main_container(beat)
    schedule = next(
        arg.split("=", 1)[1] for arg in container["command"] if arg.startswith("--schedule=")
    )
    folder, file = schedule.rsplit("/", 1)
    mount = next((m for m in container["volumeMounts"] if m["mountPath"] == folder), None)
    assert mount is not None, f"nothing is mounted at {folder}, the schedule's folder"
    volume = next(v for v in _pod_spec(beat)["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["exec"]["command"][-1]
        assert f"find {folder} " in check and f"-name '{file}*'" in check, probe


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_and_the_worker_share_one_claim_at_the_media_root(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    path, claim = _media_mount(objects, "web")
    assert _media_mount(objects, "web-worker") == (path, claim)
    assert path.startswith("/")
    access = find(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"]
    # Pods on several nodes need ReadWriteMany; the CPU overlay is one node (k8s/README.md).
    assert access == (["ReadWriteOnce"] if overlay == "cpu" else ["ReadWriteMany"])
    # Every pod of the web image that mounts it does so at the same path.
    for obj, template in policy.pod_templates(objects):
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in template["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        for _, container in policy.containers(template):
            for mount in container.get("volumeMounts", []):
                if claims.get(mount["name"]) == claim:
                    assert mount["mountPath"] == path, describe(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_series_jobs_go_to_celery_exactly_where_redis_is_configured(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    modes = set()
    for where, container in _web_image_containers(objects):
        env = _effective_env(objects, container)
        mode = env.get("WEB_SERIES_WORKER", "thread")
        if where.startswith(("Deployment/web-worker ", "Deployment/web-beat ")) or mode == "celery":
            assert env.get("REDIS_URL"), where
        if where.startswith(("Deployment/web ", "Deployment/web-worker ", "Deployment/web-beat ")):
            assert mode == ("celery" if env.get("REDIS_URL") else "thread"), where
            modes.add(mode)
    # Both overlays have Redis (in the cluster, or managed), so both use the worker.
    assert modes == {"celery"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_the_worker_reach_the_gateway_and_the_datastores(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    for name in WORKERS:
        labels = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for target in ("gateway", "datastore"):
            assert any(
                policy.selector_matches(peer.get("podSelector"), labels)
                for spec in (o["spec"] for o in _of_kind(objects, "NetworkPolicy"))
                if spec["podSelector"].get("matchLabels") == {ROLE: target}
                for rule in spec.get("ingress", [])
                for peer in rule["from"]
                if "namespaceSelector" not in peer
            ), (name, target)


# --- the trainer (the teachable machine) ----------------------------------------------------


def _trainer_env(objects: Objects) -> dict[str, str]:
    return _effective_env(objects, _main_container(find(objects, "Deployment", "trainer")))


def _trainer_settings(objects: Objects) -> TrainerSettings:
    """The trainer's settings as its pod reads them."""
    return TrainerSettings.from_env(_trainer_env(objects))


def _mounted_volume(deployment: Mapping[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The volume of the main container's mount that holds path, and path inside it."""
    for mount in _main_container(deployment)["volumeMounts"]:
        root = mount["mountPath"].rstrip("/")
        if path == root or path.startswith(f"{root}/"):
            volume = next(v for v in _pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
            assert not (path == root and mount.get("readOnly")), path
            return volume, path[len(root) + 1 :]
    raise AssertionError(f"{describe(deployment)} mounts nothing holding {path}")


def _secret_key_at(deployment: Mapping[str, Any], path: str) -> tuple[str, str]:
    """The (Secret, key) whose value a container reads from the file at path."""
    volume, inside = _mounted_volume(deployment, path)
    secret = volume["secret"]
    items = secret.get("items")
    key = next(i["key"] for i in items if i["path"] == inside) if items else inside
    return secret["secretName"], key


def _service_port(objects: Objects, address: str) -> tuple[Manifest, int]:
    """The headless Service an address names and the container port its port leads to."""
    host, port = address.rsplit(":", 1)
    service = find(objects, "Service", host)
    assert service["spec"]["clusterIP"] == "None", address
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    selector = {"matchLabels": service["spec"]["selector"]}
    (template,) = [
        t
        for _, t in policy.pod_templates(objects)
        if policy.selector_matches(selector, t["metadata"]["labels"])
    ]
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    return service, ports[entry["targetPort"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_trainer_runs_one_recreated_pod_with_its_data_on_a_read_write_once_claim(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    deployment = find(objects, "Deployment", "trainer")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "trainer" not in {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in _of_kind(objects, "HorizontalPodAutoscaler")
    }
    settings = _trainer_settings(objects)
    volume, inside = _mounted_volume(deployment, str(settings.data_dir))
    assert inside == ""
    claim = find(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    # The claim's single writer: no other pod mounts it.
    for obj, template in policy.pod_templates(objects):
        claims = {
            v["persistentVolumeClaim"]["claimName"]
            for v in template["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        assert obj is deployment or claim["metadata"]["name"] not in claims, describe(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_trainer_listens_in_the_pod_and_is_reached_at_the_gateways_trainer_route(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    settings = _trainer_settings(objects)
    container = _main_container(find(objects, "Deployment", "trainer"))
    assert settings.server.host == "0.0.0.0"
    assert settings.server.log_format == "json"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == settings.server.port, probe
    # The gateway's TrainerService route, which is also where it sends ListPublishedModels
    # and routes the published models, is the trainer's Service, leading to its port.
    routes = parse_routes_document(
        yaml.safe_load(_config(objects, "gateway-registry")["registry.yaml"])
    )
    (address,) = routes["trainer"].addresses
    service, port = _service_port(objects, address)
    assert (service["metadata"]["name"], port) == ("trainer", settings.server.port)
    poll = _config(objects, "gateway-config")["GATEWAY_TRAINER_POLL_SECONDS"]
    assert GatewaySettings.from_env({"GATEWAY_TRAINER_POLL_SECONDS": poll}).trainer_poll_s <= 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_trainer_knows_neither_the_gateways_address_nor_its_admin_token(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    env = _trainer_env(objects)
    assert [key for key in env if "GATEWAY" in key or "ADVERTISE" in key] == []
    assert not set(env) & set(RETIRED_VARIABLES)
    trainer = find(objects, "Deployment", "trainer")
    secrets = [v for v in _pod_spec(trainer)["volumes"] if "secret" in v]
    assert secrets == [], describe(trainer)
    # The gateway still checks the token, for an operator's RegisterModel.
    gateway = find(objects, "Deployment", "gateway")
    gateway_file = _env(_main_container(gateway))["GATEWAY_ADMIN_TOKEN_FILE"]["value"]
    assert _secret_key_at(gateway, gateway_file) == ("gateway-admin-token", "token")


def _template(objects: Objects, name: str) -> Mapping[str, Any]:
    template: Mapping[str, Any] = find(objects, "Deployment", name)["spec"]["template"]
    return template


def _labels(objects: Objects, name: str) -> Mapping[str, Any]:
    labels: Mapping[str, Any] = _template(objects, name)["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_open_the_trainer_to_the_gateway_and_nothing_else(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    trainer, gateway = _template(objects, "trainer"), _template(objects, "gateway")
    assert ingress_allowed(objects, _labels(objects, "gateway"), trainer, "grpc")
    assert ingress_allowed(objects, _labels(objects, "web"), gateway, "grpc")
    # One direction: the gateway asks the trainer; the trainer has no path to the gateway.
    assert not ingress_allowed(objects, _labels(objects, "trainer"), gateway, "grpc")
    # Everything else stays shut: the trainer reaches no model server, and only the gateway
    # reaches the trainer.
    for source in ("web", "skin", "mri", "tfserving"):
        assert not ingress_allowed(objects, _labels(objects, source), trainer, "grpc"), source
    for server in ("tfserving", "torchserve"):
        assert not ingress_allowed(
            objects, _labels(objects, "trainer"), _template(objects, server), "grpc"
        ), server
    assert not ingress_allowed(objects, _labels(objects, "skin"), gateway, "grpc")
    assert not ingress_allowed(objects, _labels(objects, "trainer"), gateway, "metrics")


def test_the_network_model_sees_a_missing_or_narrowed_policy(rendered: dict[str, Objects]) -> None:
    objects = copy.deepcopy(rendered["cpu"])
    gateway_labels, trainer = _labels(objects, "gateway"), _template(objects, "trainer")
    trainer_labels, gateway = _labels(objects, "trainer"), _template(objects, "gateway")
    to_trainer = find(objects, "NetworkPolicy", "allow-gateway-to-trainer")
    to_trainer["spec"]["ingress"][0]["ports"][0]["port"] = "metrics"
    assert not ingress_allowed(objects, gateway_labels, trainer, "grpc")
    to_trainer["spec"]["ingress"][0]["ports"] = []
    assert ingress_allowed(objects, gateway_labels, trainer, "grpc")
    to_trainer["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"][ROLE] = "web"
    assert not ingress_allowed(objects, gateway_labels, trainer, "grpc")
    assert not ingress_allowed(objects, trainer_labels, gateway, "grpc")
    # With no policy selecting a pod, it is open to every pod of the namespace.
    no_policies = [obj for obj in objects if obj["kind"] != "NetworkPolicy"]
    assert ingress_allowed(no_policies, trainer_labels, gateway, "grpc")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_web_config_is_documented_and_the_web_tier_accepts_it(
    rendered: dict[str, Objects], overlay: str, tmp_path: Path
) -> None:
    config = _config(rendered[overlay], "web-config")
    readme = (K8S_DIR.parent / "web" / "README.md").read_text()
    assert [key for key in config if f"`{key}`" not in readme] == []
    # The values must parse: Django's system checks on the settings this ConfigMap gives,
    # with the Secrets' names filled in as the pods get them.
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("WEB_")},
        **config,
        "DJANGO_SETTINGS_MODULE": "web.config.settings",
        "SECRET_KEY": "k8s-config-check-" + "x" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "WEB_MEDIA_ROOT": str(tmp_path / "media"),
        "WEB_STATIC_ROOT": str(tmp_path / "static"),
    }
    checked = subprocess.run(
        [sys.executable, str(K8S_DIR.parent / "web" / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr[-3000:]
