"""The optional OHIF viewer component (k8s/components/ohif-viewer), added to each overlay.

Rendered as an operator adds it, validated against the schemas and the policy rules, and
checked against docker/ohif.Dockerfile, its nginx template, docs/viewer/app-config.js and
the overlay's pacs.yaml.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.k8s import policy
from tests.k8s.network import Address, Endpoint, Pod, egress_allowed, ingress_allowed
from tests.k8s.render import (
    K8S_DIR,
    OVERLAYS,
    REPO_ROOT,
    KubectlMissing,
    Manifest,
    find,
    render_with_components,
    validate,
)
from tests.support.dockerfile import final_env, parse_dockerfile

Objects = list[Manifest]
NAME = "ohif-viewer"
ROLE = "medimg.io/role"
COMPONENT = K8S_DIR / "components" / "ohif-viewer"
DOCKERFILE = REPO_ROOT / "docker" / "ohif.Dockerfile"
TEMPLATE = REPO_ROOT / "docker" / "ohif" / "default.conf.template"
DOCS_CONFIG = REPO_ROOT / "docs" / "viewer" / "app-config.js"
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
# The settings of app-config.js that decide where the browser's requests go.
ROUTING_SETTINGS = ("routerBasename", "qidoRoot", "wadoRoot", "wadoUriRoot")


@pytest.fixture(scope="module")
def with_viewer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Objects]:
    """Each overlay with the component added, as `components:` in the overlay would."""
    try:
        return {
            overlay: render_with_components(
                [K8S_DIR / "overlays" / overlay],
                [COMPONENT],
                tmp_path_factory.mktemp(f"viewer-{overlay}"),
            )
            for overlay in OVERLAYS
        }
    except KubectlMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def _pacs(overlay: str) -> dict[str, str]:
    document = yaml.safe_load((K8S_DIR / "overlays" / overlay / "pacs.yaml").read_text())
    data: dict[str, str] = document["data"]
    return data


def _generated(objects: Objects, name: str) -> Manifest:
    for obj in objects:
        if obj["kind"] == "ConfigMap" and re.fullmatch(
            rf"{re.escape(name)}-[a-z0-9]{{10}}", obj["metadata"]["name"]
        ):
            return obj
    raise LookupError(f"no ConfigMap generated from {name}")


def _template(objects: Objects) -> dict[str, Any]:
    template: dict[str, Any] = find(objects, "Deployment", NAME)["spec"]["template"]
    return template


def _container(objects: Objects) -> dict[str, Any]:
    container: dict[str, Any] = _template(objects)["spec"]["containers"][0]
    return container


def _settings_of(config: str) -> dict[str, str]:
    """The quoted string settings of an app-config.js (`name: '...'`)."""
    return dict(re.findall(r"""(?m)^\s*(\w+): ['"]([^'"]*)['"]""", config))


def test_the_component_is_in_no_overlay_by_default(rendered: dict[str, Objects]) -> None:
    for overlay in OVERLAYS:
        assert not [o for o in rendered[overlay] if o["metadata"]["name"].startswith(NAME)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_viewer_renders_validates_and_passes_the_policy_rules(
    with_viewer: dict[str, Objects], overlay: str
) -> None:
    objects = with_viewer[overlay]
    for kind in ("ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "Ingress"):
        obj = find(objects, kind, NAME)
        assert obj["metadata"]["labels"][ROLE] == "viewer"
    assert validate(objects) == []
    assert policy.check(objects, policy.rules_for(overlay)) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_viewer_runs_its_image_as_the_dockerfile_builds_it(
    with_viewer: dict[str, Objects], overlay: str
) -> None:
    objects = with_viewer[overlay]
    container = _container(objects)
    runtime = parse_dockerfile(DOCKERFILE.read_text())[-1]
    assert container["image"] == f"medimg/ohif:{VERSION}"
    # nginx's own entrypoint renders the template and starts it: nothing replaces it.
    assert "command" not in container and "args" not in container
    (port,) = container["ports"]
    exposed = [w for i in runtime.all("EXPOSE") for w in i.args.split()]
    assert exposed == [str(port["containerPort"])]
    assert f"listen {port['containerPort']};" in TEMPLATE.read_text()
    security = _template(objects)["spec"]["securityContext"]
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == runtime.all("USER")[-1].args
    # Under the read-only root: writable folders where the entrypoint and nginx write.
    volumes = {v["name"]: v for v in _template(objects)["spec"]["volumes"]}
    written = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for path in ("/etc/nginx/conf.d", "/tmp"):
        assert "emptyDir" in written[path], path
    # The probes ask nginx itself, on the port it serves.
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "location = /healthz" in TEMPLATE.read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_viewer_proxies_the_pacs_that_the_overlay_names(
    with_viewer: dict[str, Objects], overlay: str
) -> None:
    objects = with_viewer[overlay]
    pacs = _pacs(overlay)
    (source,) = _container(objects)["envFrom"]
    config = _generated(objects, "ohif-viewer-config")
    assert source["configMapRef"]["name"] == config["metadata"]["name"]
    url = config["data"]["OHIF_DICOMWEB_URL"]
    assert url == pacs["dicomwebUrl"]
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https") and not url.endswith("/")
    default_port = 443 if parts.scheme == "https" else 80
    assert (parts.port or default_port) == int(pacs["dicomwebPort"])
    try:
        host = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        host = None  # a name, resolved in the cluster
    if host is not None:
        assert host in ipaddress.ip_network(pacs["addressRange"])
    # Every variable of the template is set, and the image's filter lets it through.
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", TEMPLATE.read_text()))
    assert used and used <= set(config["data"])
    runtime = parse_dockerfile(DOCKERFILE.read_text())[-1]
    assert all(re.search(final_env(runtime)["NGINX_ENVSUBST_FILTER"], name) for name in used)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_viewer_reads_its_same_origin_config_from_a_configmap(
    with_viewer: dict[str, Objects], overlay: str
) -> None:
    objects = with_viewer[overlay]
    container = _container(objects)
    (mount,) = [m for m in container["volumeMounts"] if m.get("subPath") == "app-config.js"]
    assert mount["mountPath"] == "/usr/share/nginx/html/app-config.js"
    assert mount.get("readOnly") is True
    volume = next(v for v in _template(objects)["spec"]["volumes"] if v["name"] == mount["name"])
    config = _generated(objects, "ohif-viewer-app-config")
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    text = config["data"]["app-config.js"]
    assert text == (COMPONENT / "app-config.js").read_text()
    settings = _settings_of(text)
    # The bundle is compiled for "/", and the data source is this origin's /dicom-web,
    # which the server proxies to the PACS.
    assert settings["routerBasename"] == "/"
    for root in ("qidoRoot", "wadoRoot"):
        assert settings[root].startswith("/") and "://" not in settings[root], root
        assert f"location {settings[root]}/ {{" in TEMPLATE.read_text(), root
    # The same routing as the viewer's documented configuration (docs/viewer/).
    documented = _settings_of(DOCS_CONFIG.read_text())
    assert {k: settings[k] for k in ROUTING_SETTINGS} == {
        k: documented[k] for k in ROUTING_SETTINGS
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_ingress_controller_reaches_the_viewer_and_it_reaches_only_the_pacs(
    with_viewer: dict[str, Objects], overlay: str
) -> None:
    objects = with_viewer[overlay]
    viewer = _template(objects)
    pacs = _pacs(overlay)
    assert ingress_allowed(objects, INGRESS_CONTROLLER, viewer, "http")
    web = find(objects, "Deployment", "web")["spec"]["template"]["metadata"]["labels"]
    refused: list[Endpoint] = [
        web,
        {ROLE: "pacs"},
        Address("192.0.2.10"),
        Pod("ingress-nginx", {"app.kubernetes.io/name": "other"}),
    ]
    for source in refused:
        assert not ingress_allowed(objects, source, viewer, "http"), source
    host = urlsplit(pacs["dicomwebUrl"]).hostname or ""
    port = int(pacs["dicomwebPort"])
    assert egress_allowed(objects, viewer, Address(host), port)
    assert egress_allowed(objects, viewer, DNS, 53, "UDP")
    gateway = find(objects, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    closed: list[tuple[Endpoint, int]] = [
        (Address(host), int(pacs["dicomPort"])),
        (Address("8.8.8.8"), 443),
        (gateway, 50051),
        (web, 8000),
    ]
    for destination, number in closed:
        assert not egress_allowed(objects, viewer, destination, number), destination


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_viewer_has_a_host_of_its_own_behind_the_ingress(
    with_viewer: dict[str, Objects], overlay: str
) -> None:
    objects = with_viewer[overlay]
    ingress = find(objects, "Ingress", NAME)["spec"]
    web = find(objects, "Ingress", "web")["spec"]
    hosts = [rule["host"] for rule in ingress["rules"]]
    assert ingress["tls"][0]["hosts"] == hosts
    assert not set(hosts) & {rule["host"] for rule in web["rules"]}
    (path,) = ingress["rules"][0]["http"]["paths"]
    assert path["path"] == "/"
    service = find(objects, "Service", NAME)
    backend: Mapping[str, Any] = path["backend"]["service"]
    assert backend["name"] == NAME
    assert backend["port"]["name"] in [p["name"] for p in service["spec"]["ports"]]
