"""The web tier in every overlay: ingress, migrations, settings, Celery worker and beat, media."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.k8s import policy
from tests.k8s.manifests import (
    CELERY_APP,
    ROLE,
    WEB_IMAGE,
    WORKERS,
    Objects,
    effective_env,
    env_of,
    generated_config,
    main_container,
    of_kind,
    pod_spec,
)
from tests.k8s.render import (
    K8S_DIR,
    OVERLAYS,
    describe,
    find,
)
from web.gateway_client import GatewayConfig


def _web_image_containers(objects: Objects) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container, init ones included, that runs the web tier's code (its settings)."""
    for obj, template in policy.pod_templates(objects):
        for where, container in policy.containers(template):
            if container["image"] == WEB_IMAGE:
                yield f"{describe(obj)} {where}", container


def _media_mount(objects: Objects, name: str) -> tuple[str, str]:
    """The (mount path, claim name) of the volume a Deployment mounts at its WEB_MEDIA_ROOT."""
    deployment = find(objects, "Deployment", name)
    container = main_container(deployment)
    root = effective_env(objects, container)["WEB_MEDIA_ROOT"]
    mount = next((m for m in container["volumeMounts"] if m["mountPath"] == root), None)
    assert mount is not None, f"{name} mounts nothing at WEB_MEDIA_ROOT {root}"
    assert not mount.get("readOnly", False), name
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    return mount["mountPath"], volume["persistentVolumeClaim"]["claimName"]


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
        generated_config(rendered[overlay], "mri-config")["MRI_MAX_UPLOAD_BYTES"]
    )
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert ingress["spec"]["tls"][0]["hosts"] == hosts
    allowed = generated_config(rendered[overlay], "web-config")["ALLOWED_HOSTS"].split(",")
    assert set(hosts) <= set(allowed)
    assert "localhost" in allowed  # the Host header of the kubelet's probes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_before_web_pods_start(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    job = find(objects, "Job", "web-migrate")
    web = find(objects, "Deployment", "web")
    migrate = main_container(job)
    assert migrate["command"] == ["python", "web/manage.py", "migrate", "--noinput"]
    assert migrate["image"] == main_container(web)["image"] == "medimg/web:0.1.0"
    assert job["spec"]["backoffLimit"] > 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    for name in ("web", "web-worker"):
        wait = pod_spec(find(objects, "Deployment", name))["initContainers"][0]
        assert "migrate --check" in wait["command"][-1], name
        assert wait["image"] == migrate["image"], name
        assert {"DATABASE_URL", "SECRET_KEY"} <= set(env_of(wait)) & set(env_of(migrate)), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_web_config_is_documented_and_the_web_tier_accepts_it(
    rendered: dict[str, Objects], overlay: str, tmp_path: Path
) -> None:
    config = generated_config(rendered[overlay], "web-config")
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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_series_jobs_run_in_celery_processes_of_the_web_image(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    web = main_container(find(objects, "Deployment", "web"))
    for name, command in WORKERS.items():
        deployment = find(objects, "Deployment", name)
        container = main_container(deployment)
        assert container["command"][: len(CELERY_APP) + 1] == [*CELERY_APP, command], name
        assert container["image"] == web["image"] == WEB_IMAGE
        assert container["envFrom"] == web["envFrom"], name
        assert env_of(container)["SECRET_KEY"] == env_of(web)["SECRET_KEY"], name
        assert "ports" not in container, name  # nothing connects to a worker
        find(objects, "PodDisruptionBudget", name)
    worker = find(objects, "Deployment", "web-worker")
    assert "--concurrency=1" in main_container(worker)["command"]
    # Its health check asks the same app for this pod's node, by name.
    probe = main_container(worker)["livenessProbe"]["exec"]["command"][-1]
    assert probe.startswith("exec " + " ".join(CELERY_APP) + " inspect ping")
    assert '--destination "celery@$HOSTNAME"' in probe
    beat = find(objects, "Deployment", "web-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_worker_finishes_its_job_before_it_is_killed(
    rendered: dict[str, Objects], overlay: str
) -> None:
    period = pod_spec(find(rendered[overlay], "Deployment", "web-worker"))[
        "terminationGracePeriodSeconds"
    ]
    assert period >= GatewayConfig(address="gateway:50051").series_timeout_s + 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_beat_keeps_its_schedule_where_it_can_write_and_its_probes_read(
    rendered: dict[str, Objects], overlay: str
) -> None:
    beat = find(rendered[overlay], "Deployment", "web-beat")
    container = main_container(beat)
    schedule = next(
        arg.split("=", 1)[1] for arg in container["command"] if arg.startswith("--schedule=")
    )
    folder, file = schedule.rsplit("/", 1)
    mount = next((m for m in container["volumeMounts"] if m["mountPath"] == folder), None)
    assert mount is not None, f"nothing is mounted at {folder}, the schedule's folder"
    volume = next(v for v in pod_spec(beat)["volumes"] if v["name"] == mount["name"])
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
        env = effective_env(objects, container)
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
                for spec in (o["spec"] for o in of_kind(objects, "NetworkPolicy"))
                if spec["podSelector"].get("matchLabels") == {ROLE: target}
                for rule in spec.get("ingress", [])
                for peer in rule["from"]
                if "namespaceSelector" not in peer
            ), (name, target)
