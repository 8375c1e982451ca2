"""The trainer (the teachable machine) in every overlay: its pod, claim, route and reach."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from gateway.registry import parse_routes_document
from gateway.settings import GatewaySettings
from tests.k8s import policy
from tests.k8s.manifests import (
    ROLE,
    Objects,
    effective_env,
    env_of,
    generated_config,
    main_container,
    of_kind,
    pod_spec,
)
from tests.k8s.network import ingress_allowed
from tests.k8s.render import (
    OVERLAYS,
    Manifest,
    describe,
    find,
)
from trainer_service.settings import RETIRED_VARIABLES
from trainer_service.settings import Settings as TrainerSettings


def _trainer_env(objects: Objects) -> dict[str, str]:
    return effective_env(objects, main_container(find(objects, "Deployment", "trainer")))


def _trainer_settings(objects: Objects) -> TrainerSettings:
    """The trainer's settings as its pod reads them."""
    return TrainerSettings.from_env(_trainer_env(objects))


def _mounted_volume(deployment: Mapping[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The volume of the main container's mount that holds path, and path inside it."""
    for mount in main_container(deployment)["volumeMounts"]:
        root = mount["mountPath"].rstrip("/")
        if path == root or path.startswith(f"{root}/"):
            volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
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


def _template(objects: Objects, name: str) -> Mapping[str, Any]:
    template: Mapping[str, Any] = find(objects, "Deployment", name)["spec"]["template"]
    return template


def _labels(objects: Objects, name: str) -> Mapping[str, Any]:
    labels: Mapping[str, Any] = _template(objects, name)["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_trainer_runs_one_recreated_pod_with_its_data_on_a_read_write_once_claim(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    deployment = find(objects, "Deployment", "trainer")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "trainer" not in {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in of_kind(objects, "HorizontalPodAutoscaler")
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
    container = main_container(find(objects, "Deployment", "trainer"))
    assert settings.server.host == "0.0.0.0"
    assert settings.server.log_format == "json"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == settings.server.port, probe
    # The gateway's TrainerService route, which is also where it sends ListPublishedModels
    # and routes the published models, is the trainer's Service, leading to its port.
    routes = parse_routes_document(
        yaml.safe_load(generated_config(objects, "gateway-registry")["registry.yaml"])
    )
    (address,) = routes["trainer"].addresses
    service, port = _service_port(objects, address)
    assert (service["metadata"]["name"], port) == ("trainer", settings.server.port)
    poll = generated_config(objects, "gateway-config")["GATEWAY_TRAINER_POLL_SECONDS"]
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
    secrets = [v for v in pod_spec(trainer)["volumes"] if "secret" in v]
    assert secrets == [], describe(trainer)
    # The gateway still checks the token, for an operator's RegisterModel.
    gateway = find(objects, "Deployment", "gateway")
    gateway_file = env_of(main_container(gateway))["GATEWAY_ADMIN_TOKEN_FILE"]["value"]
    assert _secret_key_at(gateway, gateway_file) == ("gateway-admin-token", "token")


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
