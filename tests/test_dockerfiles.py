"""Static checks of the container images: docker/*.Dockerfile, .dockerignore, build_images.sh.

No engine is needed: tests/support/dockerfile/ parses the Dockerfiles, and each of its rules
(a function returning violations) runs here on the real files and on a deliberately broken
text, which proves that it can fail. The expected values are the conventions of issue 7.
A plug-in disease service's Dockerfile (docker/<name>.Dockerfile beside a
<name>_service/component.json, written by `medimg new-service`) follows the same rules;
services scaffolded into a small checkout in a tmp dir prove it, and that the build script
finds them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicom_receiver.settings import DEFAULT_PORT as DICOM_PORT
from gateway.settings import DEFAULT_PORT as GATEWAY_PORT
from medimg_cli.__main__ import main as medimg
from medimg_cli.components import Component, ServiceKind, plugin_launch
from medimg_cli.scaffold.image import render_dockerfile
from medimg_cli.scaffold.spec import ServiceSpec
from mri_service.archive import archive_name
from mri_service.domain import MODEL_NAMES
from mri_service.settings import DEFAULT_PORT as MRI_PORT
from skin_service.settings import DEFAULT_PORT as SKIN_PORT
from tests.support.dockerfile import (
    CPU_TORCH_INDEX,
    SHARED_SOURCES,
    Stage,
    check_archiver_only,
    check_artifact_image,
    check_container_env,
    check_copies_only,
    check_copy_sources_exist,
    check_copy_sources_kept,
    check_cpu_torch,
    check_entrypoint,
    check_installs_exactly,
    check_installs_only,
    check_mri_archives,
    check_multi_stage,
    check_no_healthcheck,
    check_pinned_bases,
    check_plugin_image,
    check_runs_as_non_root,
    check_runtime_copies_only_venv,
    check_skin_layout,
    check_static_site_image,
    check_template_variables,
    check_writable_dir,
    commands,
    copy_parts,
    copy_sources,
    final_env,
    framework_of,
    framework_pins,
    ignore_rules,
    is_ignored,
    parse_dockerfile,
    plugin_dockerfiles,
    plugin_image_violations,
    unknown_dockerfiles,
)
from trainer_service.settings import DEFAULT_PORT as TRAINER_PORT

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
BUILD_SCRIPT = ROOT / "scripts" / "build_images.sh"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]


@dataclass(frozen=True)
class ServiceImage:
    """A component image of the conventions: its module, extra, env prefix and port.

    host is the listen address's variable after the prefix (the receiver's is not HOST).
    """

    name: str
    module: str
    extra: str
    prefix: str
    port: int
    host: str = "HOST"


@dataclass(frozen=True)
class StaticSiteImage:
    """A prebuilt web app from an npm package, served by nginx: the OHIF viewer."""

    name: str
    package: str
    version: str
    sha512: str  # of the package's tarball, as the registry publishes it (hex here)
    port: int
    template: str  # the nginx server template, relative to the repository


@dataclass(frozen=True)
class ArtifactImage:
    """A model-artifact image: the folder it holds and where its init container copies it."""

    name: str
    holds: str
    target: str


SERVICES = (
    ServiceImage("gateway", "gateway", "gateway", "GATEWAY_", 50051),
    ServiceImage("skin", "skin_service", "skin", "SKIN_", 50061),
    ServiceImage("mri", "mri_service", "mri", "MRI_", 50062),
    ServiceImage("trainer", "trainer_service", "trainer", "TRAINER_", 50063),
    ServiceImage("web", "web", "web", "WEB_", 8000),
    ServiceImage("dicom-receiver", "dicom_receiver", "dicom", "DICOM_", 11112, "BIND_ADDRESS"),
)
ARTIFACTS = (
    ArtifactImage("skin-model", "/artifacts/skin", "/models/skin"),
    ArtifactImage("mri-model", "/artifacts/model-store", "/home/model-server/model-store"),
)
# `npm view @ohif/app@3.13.2 dist.integrity` (base64), as hex, checked on the tarball here.
OHIF_SHA512 = (
    "5997719a9986eeba85816f5924b71b82bdd70ad2e2d4a0cd3e831a798e4f3dee"
    "a3e06e1f8c48e393271933a0ba664d85f3b04ac457e9abe8dde715d907d13c10"
)
STATIC_SITES = (
    StaticSiteImage(
        "ohif", "@ohif/app", "3.13.2", OHIF_SHA512, 8080, "docker/ohif/default.conf.template"
    ),
)
IMAGE_NAMES = tuple(image.name for image in (*SERVICES, *ARTIFACTS, *STATIC_SITES))
MRI_ARCHIVES = ("mri-single.mar", "mri-scantype.mar")


# --- the repository's files --------------------------------------------------------------


def dockerfile_text(name: str) -> str:
    return (DOCKER / f"{name}.Dockerfile").read_text()


def stages_of(name: str) -> list[Stage]:
    return parse_dockerfile(dockerfile_text(name))


def pin_in(extra: str, package: str) -> str:
    pins = [r.split("==", 1)[1] for r in EXTRAS[extra] if r.startswith(f"{package}==")]
    assert len(pins) == 1, f"pyproject's {extra} extra should pin {package} once"
    return pins[0]


def broken(name: str, old: str, new: str) -> list[Stage]:
    """Returns the stages of a real Dockerfile with one edit, asserting that the edit applies."""
    text = dockerfile_text(name)
    assert old in text, f"{old!r} not in {name}.Dockerfile: update this test"
    return parse_dockerfile(text.replace(old, new))


def test_it_knows_every_dockerfile_in_docker() -> None:
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(
        f"{name}.Dockerfile"
        for name in (*IMAGE_NAMES, *(plugin.name for plugin in plugin_dockerfiles(ROOT)))
    )
    assert unknown_dockerfiles(ROOT, IMAGE_NAMES) == []


def test_it_parses_continuations_flags_and_stage_names() -> None:
    stages = parse_dockerfile(
        "ARG X=1\nFROM --platform=linux/amd64 a:1.2.3 AS one\n# note\nRUN a \\\n"
        "  # inside\n  && b\nFROM one\nCOPY --from=one --chown=1:1 /x /y\n"
    )
    assert [(s.base, s.name) for s in stages] == [("a:1.2.3", "one"), ("one", None)]
    assert commands(stages[0]) == [["a"], ["b"]]
    assert copy_parts(stages[1].all("COPY")[0]) == ({"from": "one", "chown": "1:1"}, ["/x"], "/y")


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_it_finds_every_image_multi_stage_pinned_non_root_and_probe_free(name: str) -> None:
    stages = stages_of(name)
    assert check_multi_stage(stages) == []
    assert check_pinned_bases(stages) == []
    assert check_runs_as_non_root(stages) == []
    assert check_no_healthcheck(stages) == []


@pytest.mark.parametrize("image", SERVICES, ids=lambda i: i.name)
def test_it_finds_each_component_image_to_the_conventions(image: ServiceImage) -> None:
    stages = stages_of(image.name)
    assert image.extra in EXTRAS
    assert check_installs_only(stages, {image.extra}) == []
    assert check_copies_only(stages, SHARED_SOURCES | {image.module}) == []
    assert check_entrypoint(stages, image.module) == []
    assert check_runtime_copies_only_venv(stages) == []
    assert check_container_env(stages, image.prefix, image.port, image.host) == []


def test_it_exposes_the_port_each_service_listens_on_by_default() -> None:
    ports = {i.name: i.port for i in SERVICES}
    assert (
        ports["gateway"],
        ports["skin"],
        ports["mri"],
        ports["trainer"],
        ports["dicom-receiver"],
    ) == (GATEWAY_PORT, SKIN_PORT, MRI_PORT, TRAINER_PORT, DICOM_PORT)


def test_it_finds_every_plugin_image_in_docker_to_the_conventions() -> None:
    # The plug-ins of this checkout with a docker/<name>.Dockerfile (none until one is added).
    plugins = plugin_dockerfiles(ROOT)
    violations = {plugin.name: plugin_image_violations(ROOT, plugin) for plugin in plugins}
    assert {name: found for name, found in violations.items() if found} == {}


# The images that train or run torch in their own process; the model servers hold the GPU.
TORCH_IMAGES = ("mri", "trainer")


@pytest.mark.parametrize("name", TORCH_IMAGES)
def test_it_takes_torch_for_the_torch_images_from_the_cpu_index(name: str) -> None:
    assert check_cpu_torch(stages_of(name), pin_in(name, "torch")) == []


# The images whose service writes a directory of its own, named by this variable.
WRITABLE_DIRS = {
    "gateway": "GATEWAY_STATE_DIR",
    "trainer": "TRAINER_DATA_DIR",
    "dicom-receiver": "DICOM_SPOOL_DIR",
}


@pytest.mark.parametrize(("name", "variable"), WRITABLE_DIRS.items())
def test_it_makes_the_directory_each_service_writes_owned_by_the_runtime_user(
    name: str, variable: str
) -> None:
    runtime = stages_of(name)[-1]
    assert check_writable_dir(runtime, final_env(runtime).get(variable, "")) == []


@pytest.mark.parametrize("image", ARTIFACTS, ids=lambda i: i.name)
def test_it_finds_the_artifact_images_at_the_conventions_paths(image: ArtifactImage) -> None:
    assert check_artifact_image(stages_of(image.name), image.holds, image.target) == []


@pytest.mark.parametrize("image", STATIC_SITES, ids=lambda i: i.name)
def test_it_serves_the_static_app_of_the_pinned_package_on_nginx(image: StaticSiteImage) -> None:
    stages = stages_of(image.name)
    assert (
        check_static_site_image(stages, image.package, image.version, image.sha512, image.port)
        == []
    )
    assert check_template_variables(stages, (ROOT / image.template).read_text()) == []


def test_it_serves_the_ohif_version_that_the_viewer_tests_install() -> None:
    # scripts/install_ohif.sh fetches the viewer for the browser tests and docs/viewer/.
    script = (ROOT / "scripts" / "install_ohif.sh").read_text()
    match = re.search(r'^VERSION="\$\{OHIF_VERSION:-([^}]+)\}"$', script, re.MULTILINE)
    assert match, "install_ohif.sh no longer reads its version as the test expects"
    (image,) = STATIC_SITES
    assert (image.package, image.version) == ("@ohif/app", match.group(1))


def test_it_lays_out_the_skin_model_for_tf_serving() -> None:
    assert check_skin_layout(stages_of("skin-model")) == []


def test_it_packs_the_mri_archives_the_conventions_name_with_the_archiver_only() -> None:
    assert [f"{archive_name(name)}.mar" for name in MODEL_NAMES] == list(MRI_ARCHIVES)
    stages = stages_of("mri-model")
    assert check_mri_archives(stages, MRI_ARCHIVES) == []
    assert check_installs_only(stages, set()) == []
    assert (
        check_archiver_only(
            stages, f"torch-model-archiver=={pin_in('torchserve', 'torch-model-archiver')}"
        )
        == []
    )


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_it_copies_only_paths_that_exist_and_that_the_context_keeps(name: str) -> None:
    stages = stages_of(name)
    assert copy_sources(stages)
    assert check_copy_sources_exist(stages, ROOT) == []
    assert check_copy_sources_kept(stages, (ROOT / ".dockerignore").read_text()) == []


def test_it_leaves_the_environment_caches_and_tests_out_of_the_context() -> None:
    rules = ignore_rules((ROOT / ".dockerignore").read_text())
    left_out = [
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        "tests/test_protos.py",
        "gateway/tests/test_main.py",
        "var/gateway/routes.json",
        "servicekit/__pycache__/server.cpython-311.pyc",
        "medimg.egg-info/PKG-INFO",
        ".mypy_cache/3.11/x.json",
    ]
    kept = ["pyproject.toml", "README.md", "skin_service/models/skin-demo/1/saved_model.pb"]
    assert [p for p in left_out if not is_ignored(p, rules)] == []
    assert [p for p in kept if is_ignored(p, rules)] == []
    assert not is_ignored("a/b", ignore_rules("a\n!a/b\n"))


# --- each rule fails on a broken Dockerfile ------------------------------------------------

PYTHON_BASE = "docker.io/library/python:3.11.14-slim-bookworm"


def test_it_rejects_a_single_stage_image() -> None:
    assert check_multi_stage(parse_dockerfile("FROM a:1.2.3\nUSER 10001:10001\n"))


@pytest.mark.parametrize("base", ["python", "python:latest", "python:3.11-slim", "${BASE}"])
def test_it_rejects_a_base_that_is_not_pinned(base: str) -> None:
    assert check_pinned_bases(broken("gateway", f"{PYTHON_BASE} AS build", f"{base} AS build"))


def test_it_accepts_a_base_pinned_by_digest() -> None:
    digest = f"python@sha256:{'0' * 64} AS build"
    assert check_pinned_bases(broken("gateway", f"{PYTHON_BASE} AS build", digest)) == []


@pytest.mark.parametrize("user", ["", "USER root\n", "USER 0\n", "USER 10001:0\n", "USER 1000\n"])
def test_it_rejects_a_final_stage_without_the_non_root_user(user: str) -> None:
    assert check_runs_as_non_root(broken("skin", "USER 10001:10001\n", user))


def test_it_rejects_a_healthcheck() -> None:
    assert check_no_healthcheck(broken("skin", "ENTRYPOINT", "HEALTHCHECK CMD true\nENTRYPOINT"))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('".[skin]"', '".[all]"'),
        ('".[skin]"', '".[skin,dev]"'),
        ('".[skin]"', '-e ".[skin]"'),
        ('--no-cache-dir ".[skin]"', '".[skin]"'),
        ('pip install --no-cache-dir ".[skin]"', "true"),
    ],
)
def test_it_rejects_an_image_that_installs_more_than_its_extra(old: str, new: str) -> None:
    assert check_installs_only(broken("skin", old, new), {"skin"})


def test_it_rejects_an_image_that_copies_another_components_package() -> None:
    stages = broken("skin", "COPY skin_service/", "COPY gateway/ gateway/\nCOPY skin_service/")
    assert check_copies_only(stages, SHARED_SOURCES | {"skin_service"})


@pytest.mark.parametrize("new", ['["python", "-m", "gateway"]', "python -m skin_service"])
def test_it_rejects_an_entrypoint_that_runs_another_module(new: str) -> None:
    stages = broken("skin", '["python", "-m", "skin_service"]', new)
    assert check_entrypoint(stages, "skin_service")


CPU_INSTALL = f'--index-url {CPU_TORCH_INDEX} "torch==2.13.0"'


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("--index-url", "--extra-index-url"),
        (f"--index-url {CPU_TORCH_INDEX} ", ""),
        ('"torch==2.13.0"', '"torch"'),
        ('".[mri]"', f'".[mri]" && pip install --no-cache-dir {CPU_INSTALL}'),
        (f"pip install --no-cache-dir {CPU_INSTALL}", "true"),
    ],
)
def test_it_rejects_torch_that_could_come_from_pypi(old: str, new: str) -> None:
    assert check_cpu_torch(broken("mri", old, new), pin_in("mri", "torch"))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (f"--index-url {CPU_TORCH_INDEX} ", ""),
        ('".[trainer]"', f'".[trainer]" && pip install --no-cache-dir {CPU_INSTALL}'),
    ],
)
def test_it_rejects_trainer_torch_that_could_come_from_pypi(old: str, new: str) -> None:
    assert check_cpu_torch(broken("trainer", old, new), pin_in("trainer", "torch"))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('".[trainer]"', '".[trainer,mri]"'),
        ("COPY trainer_service/", "COPY mri_service/ mri_service/\nCOPY trainer_service/"),
        ("TRAINER_PORT=50063", "TRAINER_PORT=50064"),
    ],
)
def test_it_rejects_a_trainer_image_off_the_conventions(old: str, new: str) -> None:
    stages = broken("trainer", old, new)
    assert (
        check_installs_only(stages, {"trainer"})
        + check_copies_only(stages, SHARED_SOURCES | {"trainer_service"})
        + check_container_env(stages, "TRAINER_", 50063)
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("TRAINER_DATA_DIR=/var/lib/medimg/trainer", "TRAINER_DATA_DIR=/var/lib/trainer"),
        ("chown 10001:10001 /var/lib/medimg/trainer", "chown 10001:10001 /opt"),
        ("mkdir -p /var/lib/medimg/trainer", "mkdir -p /opt"),
    ],
)
def test_it_rejects_a_data_directory_the_runtime_user_cannot_write(old: str, new: str) -> None:
    runtime = broken("trainer", old, new)[-1]
    assert check_writable_dir(runtime, final_env(runtime)["TRAINER_DATA_DIR"])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("USER 10001:10001", "COPY gateway/ /app/gateway/\nUSER 10001:10001"),
        (f"{PYTHON_BASE} AS runtime", "docker.io/library/python:3.11.14-slim-trixie AS runtime"),
    ],
)
def test_it_rejects_a_runtime_stage_with_more_than_the_venv(old: str, new: str) -> None:
    assert check_runtime_copies_only_venv(broken("gateway", old, new))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    PYTHONUNBUFFERED=1 \\\n", ""),
        ("GATEWAY_HOST=0.0.0.0", "GATEWAY_HOST=127.0.0.1"),
        ("EXPOSE 50051", "EXPOSE 50052"),
    ],
)
def test_it_rejects_a_container_environment_off_the_conventions(old: str, new: str) -> None:
    assert check_container_env(broken("gateway", old, new), "GATEWAY_", 50051)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("COPY --from=layout /artifacts/skin/ /artifacts/skin/", "COPY --from=layout / /"),
        ("/models/skin/", "/models/other/"),
    ],
)
def test_it_rejects_an_artifact_image_off_the_conventions_paths(old: str, new: str) -> None:
    assert check_artifact_image(broken("skin-model", old, new), "/artifacts/skin", "/models/skin")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("@ohif/app@3.13.2", "@ohif/app"),
        ("@ohif/app@3.13.2", "@ohif/app@3.13.1"),
        ("sha512sum -c -", "cat"),
        ("5997719a", "0997719a"),
        ("    && rm package/dist/app-config.js \\\n", ""),
        ("nginxinc/nginx-unprivileged:1.28.0-alpine", "library/nginx:1.28.0-alpine"),
        ("/fetch/package/dist/ /usr/share/nginx/html/", "/fetch/package/ /usr/share/nginx/html/"),
        ("/etc/nginx/templates/default.conf.template", "/etc/nginx/conf.d/default.conf"),
        ("    && chown 10001:10001 /etc/nginx/conf.d\n", "\n"),
        ("EXPOSE 8080", "EXPOSE 80"),
        ("EXPOSE 8080", 'EXPOSE 8080\nCMD ["nginx", "-g", "daemon off;"]'),
    ],
)
def test_it_rejects_a_static_site_image_off_the_conventions(old: str, new: str) -> None:
    (image,) = STATIC_SITES
    stages = broken(image.name, old, new)
    assert check_static_site_image(stages, image.package, image.version, image.sha512, image.port)


@pytest.mark.parametrize(
    ("dockerfile", "template"),
    [
        (("ENV NGINX_ENVSUBST_FILTER=^OHIF_\n", ""), None),
        (("^OHIF_", "^(OHIF_|uri)"), None),
        (None, ("${OHIF_DICOMWEB_URL}", "${DICOMWEB_URL}")),
        (None, ("${OHIF_DICOMWEB_URL}", "http://pacs:8042/dicom-web")),
    ],
)
def test_it_rejects_a_template_whose_variables_the_filter_gets_wrong(
    dockerfile: tuple[str, str] | None, template: tuple[str, str] | None
) -> None:
    (image,) = STATIC_SITES
    stages = broken(image.name, *dockerfile) if dockerfile else stages_of(image.name)
    text = (ROOT / image.template).read_text()
    if template:
        assert template[0] in text
        text = text.replace(*template)
    assert check_template_variables(stages, text)


def test_it_rejects_a_skin_model_outside_its_version_folder() -> None:
    stages = broken("skin-model", "/ /artifacts/skin/1/", "/ /artifacts/skin/")
    assert check_skin_layout(stages)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("--out /artifacts/model-store", "--out /artifacts/model-store --prefix x-"),
        ("--out /artifacts/model-store \\", "--out /tmp/store \\"),
        ("test -f /artifacts/model-store/mri-scantype.mar", "true"),
    ],
)
def test_it_rejects_mri_archives_off_the_conventions(old: str, new: str) -> None:
    assert check_mri_archives(broken("mri-model", old, new), MRI_ARCHIVES)


@pytest.mark.parametrize("new", ['"torchserve==0.12.0" "torch-model-archiver==0.12.0"', "torch"])
def test_it_rejects_an_archive_stage_that_installs_more_than_the_archiver(new: str) -> None:
    stages = broken("mri-model", '"torch-model-archiver==0.12.0"', new)
    assert check_archiver_only(stages, "torch-model-archiver==0.12.0")


def test_it_rejects_a_copy_of_a_folder_that_was_renamed() -> None:
    stages = broken("gateway", "COPY servicekit/ servicekit/", "COPY service_kit/ service_kit/")
    assert check_copy_sources_exist(stages, ROOT)


def test_it_rejects_a_copy_that_the_context_leaves_out() -> None:
    dockerignore = (ROOT / ".dockerignore").read_text() + "servicekit\n"
    assert check_copy_sources_kept(stages_of("gateway"), dockerignore)


# --- plug-in images (`medimg new-service`) ------------------------------------------------

EYE = Component("eye", "eye_service", "EYE_", 50070, ServiceKind.IMAGE, plugin_launch)


def plugin_text(framework: str) -> str:
    """Returns the Dockerfile `medimg new-service eye` writes for the framework."""
    spec = ServiceSpec("eye", ("normal", "cataract"), framework, EYE.default_port)
    return render_dockerfile(spec, PYPROJECT)


def plugin_violations(framework: str, text: str) -> list[str]:
    stages = parse_dockerfile(text)
    return check_plugin_image(stages, EYE, framework, framework_pins(PYPROJECT, framework))


def broken_plugin(framework: str, old: str, new: str) -> list[str]:
    """Returns the violations of eye's generated Dockerfile with one edit."""
    text = plugin_text(framework)
    assert old in text, f"{old!r} not in the generated {framework} Dockerfile: update this test"
    return plugin_violations(framework, text.replace(old, new))


def write_component(root: Path, name: str, port: int = 50070) -> None:
    """Writes <root>/<name>_service/component.json as `medimg new-service` does."""
    row = {"name": name, "module": f"{name}_service", "prefix": f"{name.upper()}_"}
    path = root / f"{name}_service" / "component.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**row, "port": port, "kind": "image"}))


def test_it_takes_each_frameworks_pins_from_the_built_in_service_of_that_framework() -> None:
    assert framework_pins(PYPROJECT, "torch") == (f"torch=={pin_in('mri', 'torch')}",)
    assert framework_pins(PYPROJECT, "keras") == (
        f"tensorflow=={pin_in('skin', 'tensorflow')}",
        f"keras=={pin_in('skin', 'keras')}",
    )


def test_it_reads_requirements_past_pip_options_and_the_project() -> None:
    stages = parse_dockerfile(
        "FROM a:1.2.3 AS b\nRUN pip install --no-cache-dir -i https://x/simple --find-links /w"
        ' "torch==1.0" "." && pip install --no-cache-dir --index-url=https://y "keras==2.0"\n'
    )
    assert check_installs_exactly(stages, ["torch==1.0", "keras==2.0"]) == []
    assert check_installs_exactly(stages, ["torch==1.0"]) == [
        "installs keras==2.0: not one of ['torch==1.0']"
    ]
    assert check_installs_exactly(stages, ["torch==1.0", "keras==2.0", "numpy==2.0"]) == [
        "never installs numpy==2.0"
    ]


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_it_finds_a_generated_plugin_image_to_the_conventions(framework: str) -> None:
    assert plugin_violations(framework, plugin_text(framework)) == []


@pytest.mark.parametrize(
    ("framework", "old", "new"),
    [
        ("torch", '"."', '".[all]"'),
        ("torch", '"."', '".[dev]"'),
        ("keras", '"."', '".[skin]"'),
        ("torch", '"."', '-e "."'),
        ("torch", '"torch==2.13.0"', '"torch==2.13.0" "torchvision==0.28.0"'),
        ("torch", f"--index-url {CPU_TORCH_INDEX} ", ""),
        ("torch", '"."', '"." "torch==2.13.0"'),
        ("keras", ' "keras==3.15.1"', ""),
        ("keras", '"tensorflow==2.21.0"', '"tensorflow[and-cuda]==2.21.0"'),
        ("keras", '"tensorflow==2.21.0"', '"tensorflow"'),
        ("keras", '"tensorflow==2.21.0"', '"tensorflow==2.21.0" "tensorflow-serving-api==2.21.0"'),
        ("torch", '"-m", "eye_service"', '"-m", "skin_service"'),
        ("keras", "EYE_PORT=50070", "EYE_PORT=50071"),
        ("torch", "COPY eye_service/", "COPY skin_service/ skin_service/\nCOPY eye_service/"),
        ("keras", "USER 10001:10001", "USER root"),
        ("torch", "ENTRYPOINT", "HEALTHCHECK CMD true\nENTRYPOINT"),
        ("keras", "COPY --from=build /opt/venv /opt/venv", "COPY --from=build /src /src"),
    ],
)
def test_it_rejects_a_plugin_image_off_the_conventions(framework: str, old: str, new: str) -> None:
    assert broken_plugin(framework, old, new)


def test_it_tells_a_plugin_dockerfile_from_an_unknown_one(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    for name in ("gateway", "eye", "lung", "other"):
        (tmp_path / "docker" / f"{name}.Dockerfile").write_text("FROM a:1.2.3\n")
    write_component(tmp_path, "eye")
    (tmp_path / "lung_service").mkdir()  # a package, but no plug-in: no component.json
    assert [plugin.name for plugin in plugin_dockerfiles(tmp_path)] == ["eye"]
    assert unknown_dockerfiles(tmp_path, ["gateway"]) == ["lung", "other"]


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"model.py": "import torch\n"}, "torch"),
        ({"model.py": "from keras import layers\n", "io.py": "import tensorflow as tf\n"}, "keras"),
        ({"model.py": "import torch\n", "export.py": "import keras\n"}, None),
        ({"model.py": "import numpy\n", "tests/test_x.py": "import torch\n"}, None),
    ],
)
def test_it_reads_a_plugins_framework_from_its_imports(
    tmp_path: Path, sources: dict[str, str], expected: str | None
) -> None:
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert framework_of(tmp_path) == expected


@pytest.fixture
def scaffolded(tmp_path: Path) -> Path:
    """Returns a small checkout into which `medimg new-service` wrote eye (torch), lung (keras).

    It holds what the scaffolder needs (pyproject.toml and the three package folders, here
    stand-ins), docker/, .dockerignore, the build script and the images' other COPY sources.
    """
    root = tmp_path / "medimg"
    root.mkdir()
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(DOCKER, root / "docker")
    (root / "scripts").mkdir()
    shutil.copy(BUILD_SCRIPT, root / "scripts" / BUILD_SCRIPT.name)
    for package in ("servicekit", "gateway", "medimg_cli", "protos"):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text('"""A stand-in."""\n')
    for name, framework in (("eye", "torch"), ("lung", "keras")):
        argv = ["new-service", name, "--labels", "normal,cataract", "--framework", framework]
        assert medimg([*argv, "--root", str(root)]) == 0
    return root


def test_it_scaffolds_plugin_images_that_pass_every_rule(scaffolded: Path) -> None:
    plugins = plugin_dockerfiles(scaffolded)
    assert [(p.name, p.default_port) for p in plugins] == [("eye", 50070), ("lung", 50071)]
    assert [framework_of(p.package_dir) for p in plugins if p.package_dir] == ["torch", "keras"]
    assert {p.name: plugin_image_violations(scaffolded, p) for p in plugins} == {
        "eye": [],
        "lung": [],
    }
    assert unknown_dockerfiles(scaffolded, IMAGE_NAMES) == []


def test_it_finds_a_plugin_image_whose_package_is_left_out_of_the_context(
    scaffolded: Path,
) -> None:
    with (scaffolded / ".dockerignore").open("a") as dockerignore:
        dockerignore.write("eye_service\n")
    (eye, _) = plugin_dockerfiles(scaffolded)
    assert plugin_image_violations(scaffolded, eye) == [
        "COPY eye_service: left out by .dockerignore"
    ]


# --- scripts/build_images.sh ---------------------------------------------------------------


def make_repo(tmp_path: Path, script: str, *, web: bool) -> Path:
    """Returns a copy of the repository's top: the script and pyproject.toml, maybe web/."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "build_images.sh").write_text(script)
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    if web:
        (repo / "web").mkdir()
        (repo / "web" / "manage.py").write_text("")
    return repo


def run_build_script(
    tmp_path: Path, repo: Path, *args: str, info_rc: int = 0, path: str | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Runs the repo's script with a stub `docker` that records; returns it and the calls."""
    stub = tmp_path / "bin"
    stub.mkdir(parents=True)
    calls = tmp_path / "calls"
    (stub / "docker").write_text(
        f'#!/bin/sh\n[ "$1" = info ] && exit {info_rc}\necho "$*" >> {shlex.quote(str(calls))}\n'
    )
    (stub / "docker").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CONTAINER_ENGINE"}
    env["PATH"] = path if path is not None else f"{stub}{os.pathsep}{env.get('PATH', '')}"
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, "scripts/build_images.sh", *args], cwd=repo, env=env, capture_output=True, text=True
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


def check_build_calls(calls: Sequence[str], names: Sequence[str]) -> list[str]:
    expected = [f"build -f docker/{n}.Dockerfile -t medimg/{n}:{VERSION} ." for n in names]
    return [] if list(calls) == expected else [f"built {list(calls)}, not {expected}"]


def script_text() -> str:
    return BUILD_SCRIPT.read_text()


def test_it_finds_the_build_script_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(BUILD_SCRIPT)], check=True)
    assert os.access(BUILD_SCRIPT, os.X_OK)


@pytest.mark.parametrize("web", [True, False], ids=["web-present", "web-pending"])
def test_it_builds_exactly_the_conventions_tags(tmp_path: Path, web: bool) -> None:
    result, calls = run_build_script(tmp_path, make_repo(tmp_path, script_text(), web=web))
    assert result.returncode == 0, result.stderr
    names = [n for n in IMAGE_NAMES if web or n != "web"]
    assert check_build_calls(calls, names) == []
    assert web or f"skipping medimg/web:{VERSION}" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [(" ohif)", ")"), ('tag="medimg/$name:$version"', 'tag="medimg/$name:latest"')],
)
def test_it_rejects_a_build_script_off_the_conventions(tmp_path: Path, old: str, new: str) -> None:
    assert old in script_text()
    repo = make_repo(tmp_path, script_text().replace(old, new), web=True)
    _, calls = run_build_script(tmp_path, repo)
    assert check_build_calls(calls, IMAGE_NAMES)


def test_it_stops_with_a_message_when_no_engine_is_on_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    repo = make_repo(tmp_path, script_text(), web=True)
    result, calls = run_build_script(tmp_path, repo, path=str(empty))
    assert (result.returncode, calls) == (1, [])
    assert "neither docker nor podman is on PATH" in result.stderr


def test_it_stops_with_a_message_when_the_engine_does_not_answer(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, script_text(), web=True)
    result, calls = run_build_script(tmp_path, repo, info_rc=1)
    assert (result.returncode, calls) == (1, [])
    assert "no engine answers" in result.stderr


BUILT_IN_NOW = [n for n in IMAGE_NAMES if n != "web"]  # web/ is not in a scaffolded checkout


def test_it_builds_the_scaffolded_plugins_after_the_built_in_images(
    tmp_path: Path, scaffolded: Path
) -> None:
    result, calls = run_build_script(tmp_path, scaffolded)
    assert result.returncode == 0, result.stderr
    assert check_build_calls(calls, [*BUILT_IN_NOW, "eye", "lung"]) == []


def test_it_builds_one_plugin_by_name(tmp_path: Path, scaffolded: Path) -> None:
    result, calls = run_build_script(tmp_path, scaffolded, "lung")
    assert result.returncode == 0, result.stderr
    assert check_build_calls(calls, ["lung"]) == []


def test_it_skips_a_plugin_without_a_dockerfile_and_says_so(
    tmp_path: Path, scaffolded: Path
) -> None:
    (scaffolded / "docker" / "lung.Dockerfile").unlink()
    result, calls = run_build_script(tmp_path, scaffolded)
    assert result.returncode == 0, result.stderr
    assert check_build_calls(calls, [*BUILT_IN_NOW, "eye"]) == []
    assert f"skipping medimg/lung:{VERSION}: lung_service has no docker/lung.Dockerfile" in (
        result.stdout
    )
    result, calls = run_build_script(tmp_path / "again", scaffolded, "lung")
    assert (result.returncode, calls) == (2, [])
    assert "lung_service has no docker/lung.Dockerfile" in result.stderr


def test_it_refuses_an_image_it_does_not_know(tmp_path: Path) -> None:
    result, calls = run_build_script(tmp_path, make_repo(tmp_path, script_text(), web=True), "eye")
    assert (result.returncode, calls) == (2, [])
    assert "unknown image 'eye'" in result.stderr
