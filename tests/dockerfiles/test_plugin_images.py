"""Plug-in images (`medimg new-service`): their pins, rules and the context that builds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dockerfiles.images import (
    IMAGE_NAMES,
    PYPROJECT,
    broken_plugin,
    pin_in,
    plugin_text,
    plugin_violations,
    write_component,
)
from tests.support.dockerfile import (
    CPU_TORCH_INDEX,
    check_installs_exactly,
    framework_of,
    framework_pins,
    parse_dockerfile,
    plugin_dockerfiles,
    plugin_image_violations,
    unknown_dockerfiles,
)


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
