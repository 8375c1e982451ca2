"""Each image rule fails on a Dockerfile broken in exactly the way it guards against."""

from __future__ import annotations

import pytest

from tests.dockerfiles.images import (
    MRI_ARCHIVES,
    ROOT,
    STATIC_SITES,
    broken,
    pin_in,
    stages_of,
)
from tests.support.dockerfile import (
    CPU_TORCH_INDEX,
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
    final_env,
    parse_dockerfile,
)

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
