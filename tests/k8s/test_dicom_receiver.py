"""The DICOM receiver's component (k8s/components/dicom-receiver) in both overlays.

Rendering, schemas and the policy rules are checked for every object of an overlay by
test_manifests.py and test_policy_rules.py; here: what the receiver needs to work and what
the network policies let in and out, against the overlay's pacs.yaml (the one file an
operator edits) and docker/dicom-receiver.Dockerfile.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from dicom_receiver.receiver import Receiver
from dicom_receiver.settings import ReceiverSettings
from tests.k8s.network import Address, Endpoint, Pod, egress_allowed, ingress_allowed, reaches
from tests.k8s.render import K8S_DIR, OVERLAYS, REPO_ROOT, Manifest, find
from tests.support.dockerfile import exec_form, final_env, parse_dockerfile

Objects = list[Manifest]
NAME = "dicom-receiver"
ROLE = "medimg.io/role"
DOCKERFILE = REPO_ROOT / "docker" / "dicom-receiver.Dockerfile"
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
# An AE title: 1 to 16 characters of the default repertoire, no backslash, not all spaces.
AE_TITLE = re.compile(r"[ -\[\]-~]{1,16}")
GIB = 1024**3


def _pacs(overlay: str) -> dict[str, str]:
    """The data of the overlay's pacs.yaml, as the operator wrote it."""
    document = yaml.safe_load((K8S_DIR / "overlays" / overlay / "pacs.yaml").read_text())
    assert document["metadata"]["annotations"]["config.kubernetes.io/local-config"] == "true"
    data: dict[str, str] = document["data"]
    return data


def _config(objects: Objects, name: str) -> dict[str, str]:
    for obj in objects:
        if obj["kind"] == "ConfigMap" and re.fullmatch(
            rf"{re.escape(name)}-[a-z0-9]{{10}}", obj["metadata"]["name"]
        ):
            data: dict[str, str] = obj["data"]
            return data
    raise LookupError(f"no ConfigMap generated from {name}")


def _template(objects: Objects, name: str) -> dict[str, Any]:
    template: dict[str, Any] = find(objects, "Deployment", name)["spec"]["template"]
    return template


def _labels(objects: Objects, name: str) -> Mapping[str, Any]:
    labels: Mapping[str, Any] = _template(objects, name)["metadata"]["labels"]
    return labels


def _container(objects: Objects) -> dict[str, Any]:
    container: dict[str, Any] = _template(objects, NAME)["spec"]["containers"][0]
    return container


def _destination(value: str) -> tuple[str, str, int]:
    """Splits AE@host:port."""
    ae_title, _, address = value.partition("@")
    host, _, port = address.rpartition(":")
    return ae_title, host, int(port)


def _quantity_bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": GIB, "Ti": 1024**4}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", quantity)
    assert match, quantity
    return int(match.group(1)) * units[match.group(2)]


def _an_address_in(cidr: str) -> Address:
    network = ipaddress.ip_network(cidr)
    return Address(str(next(iter(network.hosts()), network.network_address)))


def _an_address_outside(cidr: str) -> Address:
    network = ipaddress.ip_network(cidr)
    return Address(str(network.broadcast_address + 1))


def test_every_overlay_names_a_pacs_whose_destination_lies_in_its_range() -> None:
    for overlay in OVERLAYS:
        pacs = _pacs(overlay)
        network = ipaddress.ip_network(pacs["addressRange"])  # strict: host bits unset
        assert network.prefixlen >= 8, "a range that wide is not one PACS"
        ae_title, host, port = _destination(pacs["destination"])
        assert AE_TITLE.fullmatch(ae_title) and ae_title.strip(), ae_title
        assert port == int(pacs["dicomPort"])
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue  # a host name, resolved in the cluster: not checkable here
        # An address must lie in the range the receiver's egress opens.
        assert address in network, overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_receiver_runs_the_image_and_entrypoint_of_its_dockerfile(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    runtime = parse_dockerfile(DOCKERFILE.read_text())[-1]
    container = _container(objects)
    assert container["image"] == f"medimg/dicom-receiver:{VERSION}"
    # The image's ENTRYPOINT runs: no command or args replace it.
    assert "command" not in container and "args" not in container
    assert exec_form(runtime.all("ENTRYPOINT")[-1]) == ["python", "-m", "dicom_receiver"]
    # The pod's user is the image's.
    security = _template(objects, NAME)["spec"]["securityContext"]
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == runtime.all("USER")[-1].args
    # The port the image exposes is the one it listens on, the container's and the Service's.
    image_env = final_env(runtime)
    config = _config(objects, "dicom-receiver-config")
    exposed = [w for i in runtime.all("EXPOSE") for w in i.args.split()]
    assert exposed == [image_env["DICOM_PORT"]] == [config["DICOM_PORT"]]
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("dicom", int(config["DICOM_PORT"]))
    assert config["DICOM_BIND_ADDRESS"] == image_env["DICOM_BIND_ADDRESS"] == "0.0.0.0"
    assert config["DICOM_SPOOL_DIR"] == image_env["DICOM_SPOOL_DIR"]
    (source,) = container["envFrom"]
    assert re.fullmatch(r"dicom-receiver-config-[a-z0-9]{10}", source["configMapRef"]["name"])


def _settings(objects: Objects) -> ReceiverSettings:
    """The receiver's settings as its pod reads them (the ConfigMap is its whole env)."""
    return ReceiverSettings.from_env(_config(objects, "dicom-receiver-config"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_receiver_is_probed_on_its_dicom_port(
    rendered: dict[str, Objects], overlay: str
) -> None:
    container = _container(rendered[overlay])
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["tcpSocket"]["port"] == "dicom", probe
    liveness = container["livenessProbe"]
    command = liveness["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    # It finds the port and AE title in the container's environment, which holds them.
    config = _config(rendered[overlay], "dicom-receiver-config")
    for variable in ("DICOM_PORT", "DICOM_AE_TITLE"):
        assert f'os.environ["{variable}"]' in command[2] and variable in config
    # A Python process per run: not more often than every 30 s, with time to import.
    assert liveness["periodSeconds"] >= 30
    assert liveness["timeoutSeconds"] >= 10


@pytest.fixture(scope="module")
def running_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """A real receiver (dicom_receiver) on a free loopback port with an empty spool."""
    spool = tmp_path_factory.mktemp("spool")
    settings = ReceiverSettings.from_env({"DICOM_PORT": "0", "DICOM_SPOOL_DIR": str(spool)})
    started = Receiver(settings)
    started.start()
    yield started
    started.stop(grace_s=0)


def _run_probe(command: list[str], port: int, ae_title: str) -> int:
    env = {**os.environ, "DICOM_PORT": str(port), "DICOM_AE_TITLE": ae_title}
    # The container's `python` is the image's venv; here, this interpreter.
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return result.returncode


def test_the_liveness_probe_echoes_a_running_receiver_and_fails_otherwise(
    rendered: dict[str, Objects], running_receiver: Receiver, tmp_path: Path
) -> None:
    command = _container(rendered["cpu"])["livenessProbe"]["exec"]["command"]
    title = running_receiver.settings.ae_title
    assert _run_probe(command, running_receiver.port, title) == 0
    # The receiver refuses associations addressed to another AE title: the probe must call
    # the one the pod is configured with.
    assert _run_probe(command, running_receiver.port, "NOT-MEDIMG") == 1
    # Nothing listening: a failure, within the probe's timeout.
    stopped = Receiver(
        ReceiverSettings.from_env({"DICOM_PORT": "0", "DICOM_SPOOL_DIR": str(tmp_path)})
    )
    stopped.start()
    port = stopped.port
    stopped.stop(grace_s=0)
    assert _run_probe(command, port, title) == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_receiver_takes_its_settings_from_the_overlays_pacs(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    config = _config(objects, "dicom-receiver-config")
    settings = _settings(objects)  # the receiver's own validation: raises on a bad value
    pacs = _pacs(overlay)
    assert config["DICOM_DESTINATION"] == pacs["destination"]
    assert str(settings.destination) == pacs["destination"]
    assert AE_TITLE.fullmatch(settings.ae_title)
    assert settings.bind_address == "0.0.0.0"
    assert settings.log_format == "json"
    assert settings.stable_age_s > 0
    # An analysis waits no longer than the gateway lets a call last.
    gateway = _config(objects, "gateway-config")
    assert settings.analysis_timeout_s <= float(gateway["GATEWAY_MAX_DEADLINE_SECONDS"])
    # The gateway's headless Service, on the port the gateway listens on.
    host, port = config["DICOM_GATEWAY_ADDRESS"].rsplit(":", 1)
    service = find(objects, "Service", host)
    assert service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["labels"][ROLE] == "gateway"
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert int(port) == int(_config(objects, "gateway-config")["GATEWAY_PORT"])
    # No study larger than the MRI service takes is kept.
    assert int(config["DICOM_MAX_STUDY_BYTES"]) <= int(
        _config(objects, "mri-config")["MRI_MAX_UPLOAD_BYTES"]
    )
    assert int(config["DICOM_MAX_STUDY_BYTES"]) <= int(config["DICOM_MAX_ASSOCIATION_BYTES"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_receiver_spools_on_a_claim_of_its_own_that_holds_two_associations(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    deployment = find(objects, "Deployment", NAME)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    config = _config(objects, "dicom-receiver-config")
    container = _container(objects)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == config["DICOM_SPOOL_DIR"]]
    assert not mount.get("readOnly", False)
    volumes = {v["name"]: v for v in _template(objects, NAME)["spec"]["volumes"]}
    claim_name = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    claim = find(objects, "PersistentVolumeClaim", claim_name)
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    size = _quantity_bytes(claim["spec"]["resources"]["requests"]["storage"])
    settings = _settings(objects)
    assert str(settings.spool_dir) == config["DICOM_SPOOL_DIR"]
    assert size >= 2 * settings.max_association_bytes + settings.min_free_bytes
    # The claim's single writer.
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job") and obj is not deployment:
            used = {
                v["persistentVolumeClaim"]["claimName"]
                for v in obj["spec"]["template"]["spec"].get("volumes", [])
                if "persistentVolumeClaim" in v
            }
            assert claim_name not in used, obj["metadata"]["name"]
    # The stop joins each worker for the grace; the kubelet waits longer than that.
    period = _template(objects, NAME)["spec"]["terminationGracePeriodSeconds"]
    assert period >= settings.grace_s * settings.max_concurrent_studies + 15


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_receivers_service_is_a_node_port_that_keeps_the_pacss_address(
    rendered: dict[str, Objects], overlay: str
) -> None:
    spec = find(rendered[overlay], "Service", NAME)["spec"]
    assert spec["type"] == "NodePort"
    # Cluster would masquerade the PACS's address: the ipBlock would see a node.
    assert spec["externalTrafficPolicy"] == "Local"
    (port,) = spec["ports"]
    assert (port["port"], port["targetPort"], port["protocol"]) == (11112, "dicom", "TCP")
    assert 30000 <= port["nodePort"] <= 32767


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_pacs_reaches_the_receivers_dicom_port(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    receiver = _template(objects, NAME)
    pacs = _pacs(overlay)
    inside = _an_address_in(pacs["addressRange"])
    _, host, _ = _destination(pacs["destination"])
    allowed: list[Endpoint] = [inside, Address(host), {ROLE: "pacs"}]
    for source in allowed:
        assert ingress_allowed(objects, source, receiver, 11112), source
    refused: list[Endpoint] = [
        _an_address_outside(pacs["addressRange"]),
        Address("8.8.8.8"),
        Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
        Pod("monitoring", {}),
        *(_labels(objects, name) for name in ("web", "gateway", "skin", "mri", "trainer")),
    ]
    for source in refused:
        assert not ingress_allowed(objects, source, receiver, 11112), source
    # From the PACS, the DICOM port only.
    for port in (22, 8080, 9090, 11113):
        assert not ingress_allowed(objects, inside, receiver, port), port
    # Every address range in the receiver's policies is the one of pacs.yaml.
    ranges = {
        peer["ipBlock"]["cidr"]
        for policy in objects
        if policy["kind"] == "NetworkPolicy"
        and policy["spec"]["podSelector"].get("matchLabels") == {ROLE: "dicom-receiver"}
        for section, key in (("ingress", "from"), ("egress", "to"))
        for rule in policy["spec"].get(section, [])
        for peer in rule.get(key, [])
        if "ipBlock" in peer
    }
    assert ranges == {pacs["addressRange"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_receiver_reaches_the_gateway_the_pacs_and_dns_only(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    receiver = _template(objects, NAME)
    pacs = _pacs(overlay)
    _, host, port = _destination(pacs["destination"])
    # The gateway's policies admit it and its own egress lets it out: both ends.
    assert reaches(objects, receiver, _template(objects, "gateway"), "grpc")
    assert egress_allowed(objects, receiver, DNS, 53, "UDP")
    assert egress_allowed(objects, receiver, DNS, 53, "TCP")
    assert egress_allowed(objects, receiver, Address(host), port)
    assert egress_allowed(objects, receiver, {ROLE: "pacs"}, port)
    closed: list[tuple[Endpoint, int]] = [
        (Address(host), 22),
        (_an_address_outside(pacs["addressRange"]), port),
        (Address("8.8.8.8"), 443),
        (Pod("kube-system", {"k8s-app": "other"}), 53),
        (_labels(objects, "web"), 8000),
        (_labels(objects, "gateway"), 9090),
        (_labels(objects, "mri"), 50062),
        (_labels(objects, "torchserve"), 7070),
        (_labels(objects, "trainer"), 50063),
    ]
    for destination, number in closed:
        assert not egress_allowed(objects, receiver, destination, number), destination
    # The placeholders of the component never survive the overlay's replacements.
    policy = find(objects, "NetworkPolicy", "dicom-receiver-egress")
    assert [r["ports"][0]["port"] for r in policy["spec"]["egress"]] == [53, port, 50051]


def test_the_network_model_sees_a_narrowed_or_missing_receiver_policy(
    rendered: dict[str, Objects],
) -> None:
    objects = copy.deepcopy(rendered["cpu"])
    receiver, gateway = _template(objects, NAME), _template(objects, "gateway")
    pacs = _pacs("cpu")
    inside = _an_address_in(pacs["addressRange"])
    to_receiver = find(objects, "NetworkPolicy", "allow-pacs-to-dicom-receiver")
    to_receiver["spec"]["ingress"][0]["from"][0]["ipBlock"]["except"] = [pacs["addressRange"]]
    assert not ingress_allowed(objects, inside, receiver, 11112)
    egress = find(objects, "NetworkPolicy", "dicom-receiver-egress")
    egress["spec"]["egress"].pop()  # the gateway's rule
    assert not reaches(objects, receiver, gateway, "grpc")
    objects.remove(egress)
    assert reaches(objects, receiver, gateway, "grpc")
    objects.remove(find(objects, "NetworkPolicy", "allow-dicom-receiver-to-gateway"))
    assert not reaches(objects, receiver, gateway, "grpc")
    assert ingress_allowed(objects, _labels(objects, "web"), gateway, "grpc")
