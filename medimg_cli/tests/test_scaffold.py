"""Tests of `medimg new-service` on small checkouts in tmp dirs (plug-ins: test_plugins.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from medimg_cli import components
from medimg_cli.__main__ import main
from medimg_cli.components import (
    BUILT_INS,
    load_plugin,
)
from medimg_cli.scaffold.render import render_service, sort_first_party_imports
from medimg_cli.scaffold.spec import (
    ScaffoldError,
    ServiceSpec,
    build_spec,
    check_checkout,
    check_name,
    choose_port,
    parse_labels,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """Returns a small medimg checkout: pyproject, .env.example, k8s/, docker/ and packages.

    servicekit is the real one: ruff sorts an import as first-party only when the module
    it names is there. gateway and medimg_cli are stand-ins.
    """
    root = tmp_path / "medimg"
    root.mkdir()
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copy(ROOT / ".env.example", root)
    shutil.copytree(ROOT / "k8s", root / "k8s")
    shutil.copytree(ROOT / "docker", root / "docker")
    shutil.copytree(
        ROOT / "servicekit", root / "servicekit", ignore=shutil.ignore_patterns("__pycache__")
    )
    for package in ("gateway", "medimg_cli"):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text('"""A stand-in."""\n')
    return root


def write_plugin(root: Path, folder: str, **fields: object) -> Path:
    """Writes <root>/<folder>/component.json: the eye plug-in's row, changed by fields."""
    row = {"name": "eye", "module": "eye_service", "prefix": "EYE_", "port": 50070}
    row = {**row, "kind": "image", **fields}
    path = root / folder / "component.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row))
    return path


def new_service(root: Path, name: str, *extra: str) -> int:
    return main(["new-service", name, "--labels", "normal,cataract", "--root", str(root), *extra])


# --- names, labels, ports, checkouts ---------------------------------------------------


@pytest.mark.parametrize("name", ["retina", "eye2", "a", "x" * 20])
def test_it_accepts_a_name_of_lower_case_letters_and_digits(name: str) -> None:
    assert check_name(name, BUILT_INS) == name


@pytest.mark.parametrize("name", ["Retina", "retina-scan", "retina_scan", "2eye", "", "x" * 21])
def test_it_refuses_a_name_that_cannot_be_a_disease_and_a_package(name: str) -> None:
    with pytest.raises(ScaffoldError, match="lower-case letters or digits"):
        check_name(name, BUILT_INS)


def test_it_refuses_the_name_of_a_component_or_of_a_deployment_part() -> None:
    with pytest.raises(ScaffoldError, match="'skin' is already a component"):
        check_name("skin", BUILT_INS)
    with pytest.raises(ScaffoldError, match="'torchserve' is reserved"):
        check_name("torchserve", BUILT_INS)


def test_it_reads_labels_in_order() -> None:
    assert parse_labels("normal, diabetic_retinopathy,glaucoma") == (
        "normal",
        "diabetic_retinopathy",
        "glaucoma",
    )


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("normal,,glaucoma", "empty label"),
        ("normal,Glaucoma", "label 'Glaucoma' must be"),
        ("normal,2nd_stage", "label '2nd_stage' must be"),
        ("normal,glaucoma,normal", "label normal is given more than once"),
        ("normal", "2 to 20 labels, got 1"),
        (",".join(f"l{i}" for i in range(21)), "2 to 20 labels, got 21"),
    ],
)
def test_it_refuses_bad_labels(labels: str, message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        parse_labels(labels)


def test_the_port_is_the_first_one_from_50070_that_no_component_uses(checkout: Path) -> None:
    assert choose_port(None, BUILT_INS) == 50070
    others = (*BUILT_INS, load_plugin(write_plugin(checkout, "eye_service")))
    assert choose_port(None, others) == 50071


@pytest.mark.parametrize(
    ("port", "message"),
    [
        (50061, "port 50061 is already skin's"),
        (8500, "port 8500 is already a model server"),
        (80, "choose one from 1024 to 65535"),
        (70000, "choose one from 1024 to 65535"),
    ],
)
def test_it_refuses_a_taken_or_privileged_port(port: int, message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        choose_port(port, BUILT_INS)


def test_it_takes_a_free_port_it_is_given() -> None:
    assert choose_port(51000, BUILT_INS) == 51000


def test_it_refuses_a_folder_that_is_not_a_medimg_checkout(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"has no pyproject\.toml"):
        check_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    with pytest.raises(ScaffoldError, match="another project's"):
        check_checkout(tmp_path)


def test_it_refuses_a_name_whose_package_exists(checkout: Path) -> None:
    (checkout / "eye_service").mkdir()
    with pytest.raises(ScaffoldError, match="eye_service already exists"):
        build_spec(checkout, name="eye", labels="a,b", framework="torch", port=None)


# --- rendering -------------------------------------------------------------------------


def test_own_imports_are_sorted_around_servicekit_as_isort_does() -> None:
    text = "\n".join(
        [
            "from servicekit.errors import MedimgError",
            "from servicekit.settings import (",
            "    SettingsError,",
            ")",
            "from eye_service import domain",
            "",
            "X = 1",
        ]
    )
    assert sort_first_party_imports(text, ("servicekit", "eye_service")).split("\n")[:5] == [
        "from eye_service import domain",
        "from servicekit.errors import MedimgError",
        "from servicekit.settings import (",
        "    SettingsError,",
        ")",
    ]


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_every_placeholder_is_filled_and_every_python_file_compiles(framework: str) -> None:
    spec = ServiceSpec("eye", ("normal", "cataract"), framework, 50070)
    files = render_service(spec)
    assert {str(path) for path in files if path.parts[0] != "tests"} == {
        "README.md",
        "__init__.py",
        "__main__.py",
        "backends/__init__.py",
        "backends/embedded.py",
        "demo_model.py",
        "domain.py",
        "model.py",
        "settings.py",
        "train.py",
    }
    for path, text in files.items():
        assert "{{" not in text, path
        if path.suffix == ".py":
            compile(text, str(path), "exec")
    domain = files[PurePosixPath("domain.py")]
    assert 'LABELS: tuple[str, ...] = ("normal", "cataract")\n' in domain
    many = ServiceSpec("eye", tuple(f"label_{n}" for n in range(12)), framework, 50070)
    exploded = render_service(many)[PurePosixPath("domain.py")]
    assert 'LABELS: tuple[str, ...] = (\n    "label_0",\n    "label_1",\n' in exploded


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_the_rendered_service_passes_its_own_tests(framework: str, tmp_path: Path) -> None:
    """Renders the templates into a bare folder and runs the package's tests there.

    Templates are text until rendered: this is what stops them drifting from
    servicekit.classifier. The package is imported from tmp_path, servicekit from this
    checkout; the checkout's pytest settings (asyncio mode) apply.
    """
    spec = ServiceSpec("eye", ("normal", "cataract", "glaucoma"), framework, 50070)
    for path, text in render_service(spec).items():
        target = tmp_path / spec.module / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    command = [sys.executable, "-m", "pytest", spec.module, "-q", "-p", "no:cacheprovider"]
    # A plug-in service has no Django: the checkout's pytest-django must not set one up,
    # whatever an earlier test left in this process's environment.
    command += ["-p", "no:django", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout


# --- the command -----------------------------------------------------------------------


def test_it_writes_the_package_and_its_deployment_entries(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_before = (checkout / "k8s/base/gateway-registry.yaml").read_text()

    assert new_service(checkout, "eye", "--framework", "keras") == 0

    assert "wrote eye_service/ (keras, port 50070, labels normal, cataract)" in (
        capsys.readouterr().out
    )
    package = checkout / "eye_service"
    assert json.loads((package / "component.json").read_text()) == {
        "name": "eye",
        "module": "eye_service",
        "prefix": "EYE_",
        "port": 50070,
        "kind": "image",
    }
    assert load_plugin(package / "component.json").name == "eye"
    assert (package / "backends" / "embedded.py").is_file()
    assert not list(checkout.glob(".*.partial"))
    base = yaml.safe_load((checkout / "k8s/base/kustomization.yaml").read_text())
    assert base["resources"][-1] == "eye.yaml"
    objects = list(yaml.safe_load_all((checkout / "k8s/base/eye.yaml").read_text()))
    assert [o["kind"] for o in objects] == [
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ]
    registry = (checkout / "k8s/base/gateway-registry.yaml").read_text()
    assert registry.startswith(registry_before)  # comments and earlier routes kept
    assert yaml.safe_load(registry)["models"][-1] == {
        "disease": "eye",
        "kind": "image",
        "addresses": ["eye:50070"],
    }
    for overlay in ("cpu", "gpu"):
        folder = checkout / "k8s/overlays" / overlay
        assert {"path": "patches/eye.yaml"} in yaml.safe_load(
            (folder / "kustomization.yaml").read_text()
        )["patches"]
        assert (folder / "patches/eye.yaml").is_file()
    assert "\nEYE_BACKEND=embedded" in (checkout / ".env.example").read_text()


def test_it_refuses_to_run_twice_for_the_same_name(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_service(checkout, "eye") == 0
    capsys.readouterr()
    assert new_service(checkout, "eye") == 2
    assert "'eye' is already a component of this checkout" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("framework", "install"),
    [
        ("torch", '--index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"'),
        ("keras", '--no-cache-dir "tensorflow==2.21.0" "keras==3.15.1"\n'),
    ],
)
def test_it_writes_the_services_image_with_its_frameworks_pins(
    checkout: Path, framework: str, install: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_service(checkout, "eye", "--framework", framework) == 0

    assert "  added docker/eye.Dockerfile" in capsys.readouterr().out
    text = (checkout / "docker/eye.Dockerfile").read_text()
    assert "{{" not in text
    assert text.startswith("# medimg/eye:0.1.0: the eye disease service")
    assert install in text
    assert 'RUN pip install --no-cache-dir "."\n' in text
    assert "    EYE_HOST=0.0.0.0 \\\n    EYE_PORT=50070\nUSER 10001:10001\nEXPOSE 50070\n" in text
    assert text.endswith('ENTRYPOINT ["python", "-m", "eye_service"]\n')


def test_it_takes_the_pins_from_the_checkouts_pyproject_when_it_runs(checkout: Path) -> None:
    pyproject = checkout / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count('"torch==2.13.0"') == 2  # the mri extra's and the trainer extra's
    pyproject.write_text(text.replace('"torch==2.13.0"', '"torch==2.14.1"'))

    assert new_service(checkout, "eye", "--framework", "torch") == 0

    dockerfile = (checkout / "docker/eye.Dockerfile").read_text()
    assert '"torch==2.14.1"' in dockerfile and "2.13.0" not in dockerfile


@pytest.mark.parametrize(
    ("pin", "replacement", "message"),
    [
        ('"keras==3.15.1",', "", "`skin` extra should pin keras once"),
        ('"keras==3.15.1",', '"keras>=3.15",', "`skin` extra should pin keras once"),
        ('"keras==3.15.1",', '"keras==3.15.1", "keras==3.15.1",', "should pin keras once"),
        ("\nskin = [", "\nskin_models = [", "has no `skin` extra to take keras's pins from"),
    ],
)
def test_it_refuses_a_pyproject_that_does_not_pin_the_framework_once(
    checkout: Path, pin: str, replacement: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pyproject = checkout / "pyproject.toml"
    assert pin in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(pin, replacement, 1))

    assert new_service(checkout, "eye", "--framework", "keras") == 2

    assert message in capsys.readouterr().err
    assert not (checkout / "eye_service").exists()
    assert not (checkout / "docker/eye.Dockerfile").exists()


def test_it_refuses_a_name_whose_dockerfile_exists(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (checkout / "docker/eye.Dockerfile").write_text("FROM scratch\n")
    kustomization = (checkout / "k8s/base/kustomization.yaml").read_text()

    assert new_service(checkout, "eye") == 2

    assert "docker/eye.Dockerfile already exist(s); new-service never overwrites" in (
        capsys.readouterr().err
    )
    assert (checkout / "docker/eye.Dockerfile").read_text() == "FROM scratch\n"
    assert not (checkout / "eye_service").exists()
    assert (checkout / "k8s/base/kustomization.yaml").read_text() == kustomization


def test_it_notes_a_checkout_without_docker_and_writes_the_rest(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(checkout / "docker")

    assert new_service(checkout, "eye") == 0

    assert "note: docker/ not found: no Dockerfile written for medimg/eye" in (
        capsys.readouterr().out
    )
    assert (checkout / "eye_service" / "component.json").is_file()
    assert not (checkout / "docker").exists()


def test_the_next_service_gets_the_next_port(checkout: Path) -> None:
    assert new_service(checkout, "eye") == 0
    assert new_service(checkout, "lung") == 0
    assert load_plugin(checkout / "lung_service" / "component.json").default_port == 50071


def test_it_writes_nothing_when_a_deployment_file_refuses_the_entry(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = checkout / "k8s/base/gateway-registry.yaml"
    registry.write_text(registry.read_text() + "  - disease: eye\n    kind: image\n")
    kustomization = (checkout / "k8s/base/kustomization.yaml").read_text()

    assert new_service(checkout, "eye") == 2

    assert "already routes disease 'eye'" in capsys.readouterr().err
    assert not (checkout / "eye_service").exists()
    assert not (checkout / "k8s/base/eye.yaml").exists()
    assert (checkout / "k8s/base/kustomization.yaml").read_text() == kustomization


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["Eye"], "'Eye' cannot name a service"),
        (["skin"], "'skin' is already a component"),
        (["eye", "--port", "50062"], "port 50062 is already mri's"),
        (["eye", "--labels", "normal"], "2 to 20 labels, got 1"),
    ],
)
def test_it_refuses_with_exit_code_2_and_a_message(
    checkout: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_service(checkout, *argv) == 2
    assert message in capsys.readouterr().err
    assert not list(checkout.glob("*_service"))


def test_it_refuses_a_root_that_is_not_a_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_service(tmp_path, "eye") == 2
    assert "is not a medimg checkout" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "framework"), [("eye", "keras"), ("zygoma", "torch")])
def test_the_generated_package_passes_ruff(checkout: Path, name: str, framework: str) -> None:
    assert new_service(checkout, name, "--framework", framework) == 0
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, f"{name}_service"],
            cwd=checkout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_train_runs_a_plugins_trainer_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {"name": "eyetrain", "module": "eyetrain_service", "prefix": "EYETRAIN_"}
    plugin = load_plugin(write_plugin(tmp_path, "eyetrain_service", **fields))
    (tmp_path / "eyetrain_service" / "__init__.py").write_text('"""Eye."""\n')
    (tmp_path / "eyetrain_service" / "train.py").write_text(
        '"""Trains."""\n\n\ndef main(argv: list[str]) -> int:\n    return 40 + len(argv)\n'
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(components, "BY_NAME", {**components.BY_NAME, "eyetrain": plugin})
    try:
        assert main(["train", "eyetrain", "--epochs", "3"]) == 42
    finally:
        for module in ("eyetrain_service", "eyetrain_service.train"):
            sys.modules.pop(module, None)
