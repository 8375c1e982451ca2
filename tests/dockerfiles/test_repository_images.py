"""The repository's own images follow the conventions: stages, bases, user, ports, sources."""

from __future__ import annotations

import re

import pytest

from dicom_receiver.settings import DEFAULT_PORT as DICOM_PORT
from gateway.settings import DEFAULT_PORT as GATEWAY_PORT
from mri_service.archive import archive_name
from mri_service.domain import MODEL_NAMES
from mri_service.settings import DEFAULT_PORT as MRI_PORT
from skin_service.settings import DEFAULT_PORT as SKIN_PORT
from tests.dockerfiles.images import (
    ARTIFACTS,
    DOCKER,
    EXTRAS,
    IMAGE_NAMES,
    MRI_ARCHIVES,
    ROOT,
    SERVICES,
    STATIC_SITES,
    ArtifactImage,
    ServiceImage,
    StaticSiteImage,
    pin_in,
    stages_of,
)
from tests.support.dockerfile import (
    SHARED_SOURCES,
    check_archiver_only,
    check_artifact_image,
    check_container_env,
    check_copies_only,
    check_copy_sources_exist,
    check_copy_sources_kept,
    check_cpu_torch,
    check_entrypoint,
    check_installs_only,
    check_mri_archives,
    check_multi_stage,
    check_no_healthcheck,
    check_pinned_bases,
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
    ignore_rules,
    is_ignored,
    parse_dockerfile,
    plugin_dockerfiles,
    plugin_image_violations,
    unknown_dockerfiles,
)
from trainer_service.settings import DEFAULT_PORT as TRAINER_PORT


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
