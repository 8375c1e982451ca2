"""The gRPC services of every overlay: headless Services, routes, ports, grace, model servers."""

from __future__ import annotations

import pytest
import yaml

from gateway.registry import RouteKind, parse_routes_document
from tests.k8s import policy
from tests.k8s.manifests import (
    GRPC_SERVICES,
    ROLE,
    Objects,
    generated_config,
    main_container,
    of_kind,
    pod_spec,
    properties,
)
from tests.k8s.render import (
    OVERLAYS,
    describe,
    find,
)


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
def test_every_service_selects_pods_of_the_render(
    rendered: dict[str, Objects], overlay: str
) -> None:
    templates = [template for _, template in policy.pod_templates(rendered[overlay])]
    for service in of_kind(rendered[overlay], "Service"):
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
        obj["metadata"]["name"]: obj["spec"] for obj in of_kind(rendered[overlay], "NetworkPolicy")
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
        yaml.safe_load(generated_config(objects, "gateway-registry")["registry.yaml"])
    )
    assert {"skin", "mri", "trainer"} <= set(routes)
    assert [r.disease for r in routes.values() if r.kind is RouteKind.TRAINER] == ["trainer"]
    mounted = generated_config(objects, "gateway-config")["GATEWAY_REGISTRY_FILE"]
    mounts = main_container(find(objects, "Deployment", "gateway"))["volumeMounts"]
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
        config = generated_config(objects, f"{name}-config")
        assert config[f"{prefix}HOST"] == "0.0.0.0"
        assert config[f"{prefix}LOG_FORMAT"] == "json"
        assert config[f"{prefix}BACKEND"] == server
        port = int(config[f"{prefix}PORT"])
        container = main_container(find(objects, "Deployment", name))
        assert container["readinessProbe"]["grpc"]["port"] == port
        assert container["livenessProbe"]["grpc"]["port"] == port
        host, server_port = config[setting].rsplit(":", 1)
        assert host == server
        assert int(server_port) in [
            p["port"] for p in find(objects, "Service", server)["spec"]["ports"]
        ]
    assert generated_config(objects, "gateway-config")["GATEWAY_HOST"] == "0.0.0.0"


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
        config = generated_config(rendered[overlay], f"{name}-config")
        needed = float(config[f"{prefix}DRAIN_DELAY_SECONDS"]) + float(
            config[f"{prefix}GRACE_SECONDS"]
        )
        period = pod_spec(find(rendered[overlay], "Deployment", name))[
            "terminationGracePeriodSeconds"
        ]
        assert needed >= 5
        assert period >= needed + 5, name
        # Connections are recycled where clients balance over replicas (the trainer has one).
        if name != "trainer":
            assert float(config[f"{prefix}MAX_CONNECTION_AGE_SECONDS"]) > 0, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_directories_the_services_write_are_writable_mounts(
    rendered: dict[str, Objects], overlay: str
) -> None:
    for name, setting in (("gateway", "GATEWAY_STATE_DIR"), ("mri", "MRI_SPOOL_DIR")):
        path = generated_config(rendered[overlay], f"{name}-config")[setting]
        deployment = find(rendered[overlay], "Deployment", name)
        mount = next(
            m for m in main_container(deployment)["volumeMounts"] if m["mountPath"] == path
        )
        assert not mount.get("readOnly", False), setting
        volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
        assert "emptyDir" in volume, setting


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_torchserve_serves_both_models_without_tokens_and_takes_a_whole_batch(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    settings = properties(generated_config(objects, "torchserve-config")["config.properties"])
    mri = generated_config(objects, "mri-config")
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
    args = main_container(find(objects, "Deployment", "torchserve"))["args"]
    assert args[-1] == "/home/model-server/config/config.properties"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tfserving_serves_the_skin_model_where_the_init_container_puts_it(
    rendered: dict[str, Objects], overlay: str
) -> None:
    deployment = find(rendered[overlay], "Deployment", "tfserving")
    args = main_container(deployment)["args"]
    for arg in (
        "--model_name=skin",
        "--model_base_path=/models/skin",
        "--port=8500",
        "--rest_api_port=8501",
    ):
        assert arg in args
    init = pod_spec(deployment)["initContainers"][0]
    assert init["image"] == "medimg/skin-model:0.1.0"
    assert init["command"][-1] == "/models/skin/"
