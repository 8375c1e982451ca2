"""Plug-in discovery: component.json read, ordered, checked, and run with its checkout."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from medimg_cli import components
from medimg_cli.__main__ import main
from medimg_cli.components import (
    GATEWAY,
    ComponentError,
    ServiceKind,
    component_table,
    discover_plugins,
    gateway_routes,
    load_plugin,
)
from medimg_cli.tests.test_scaffold import write_plugin


def test_a_plugin_is_read_from_its_component_json(tmp_path: Path) -> None:
    plugin = load_plugin(write_plugin(tmp_path, "eye_service"))
    assert (plugin.name, plugin.module, plugin.env_prefix, plugin.default_port) == (
        "eye",
        "eye_service",
        "EYE_",
        50070,
    )
    assert plugin.kind is ServiceKind.IMAGE
    assert plugin.package_dir == (tmp_path / "eye_service").resolve()


def test_plugins_start_after_the_built_in_services_and_before_the_gateway(tmp_path: Path) -> None:
    write_plugin(tmp_path, "lung_service", name="lung", module="lung_service", prefix="LUNG_")
    write_plugin(tmp_path, "eye_service", port=50071)
    plugins = discover_plugins(tmp_path)
    names = [c.name for c in component_table(plugins)]
    assert names == ["skin", "mri", "trainer", "eye", "lung", "gateway", "dicom", "web"]
    routes = gateway_routes({plugins[0]: 50071, plugins[1]: 50070, GATEWAY: 50051})
    assert routes == "eye=image@127.0.0.1:50071;lung=image@127.0.0.1:50070"


def test_a_plugin_runs_with_its_checkout_on_the_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/elsewhere")
    plugin = load_plugin(write_plugin(tmp_path, "eye_service"))
    launch = plugin.launch(plugin, {"eye": 50070})
    assert launch.argv == (sys.executable, "-m", "eye_service")
    assert launch.env["PYTHONPATH"] == f"{tmp_path.resolve()}:/opt/elsewhere"
    assert not plugin.is_installed()
    (tmp_path / "eye_service" / "__main__.py").write_text('"""Runs."""\n')
    assert plugin.is_installed()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prefix": "EYES_"}, "prefix must be 'EYE_', got 'EYES_'"),
        ({"module": "eyes_service"}, "module must be 'eye_service'"),
        ({"port": 80}, "port must be an integer from 1024 to 65535, got 80"),
        ({"port": "50070"}, "port must be an integer"),
        ({"kind": "series"}, "kind must be 'image'"),
        ({"name": "Eye"}, "name 'Eye' must be"),
        ({"extra": 1}, "expected an object with exactly name, module, prefix, port, kind"),
    ],
)
def test_a_malformed_component_json_is_an_error_naming_the_file(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    path = write_plugin(tmp_path, "eye_service", **fields)
    with pytest.raises(ComponentError, match=message) as caught:
        discover_plugins(tmp_path)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_component_json_that_is_not_json_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write_plugin(tmp_path, "eye_service")
    path.write_text("{name: eye")
    with pytest.raises(ComponentError, match=f"{path}: not a readable JSON file"):
        discover_plugins(tmp_path)


def test_a_component_json_outside_its_package_folder_is_refused(tmp_path: Path) -> None:
    write_plugin(tmp_path, "lung_service")
    with pytest.raises(ComponentError, match="must sit in the package folder eye_service/"):
        discover_plugins(tmp_path)


def test_a_plugin_may_not_take_a_built_in_name_or_another_plugins_port(tmp_path: Path) -> None:
    skin = write_plugin(tmp_path, "skin_service", name="skin", module="skin_service")
    skin.write_text(skin.read_text().replace('"EYE_"', '"SKIN_"'))
    with pytest.raises(ComponentError, match="name 'skin' is the built-in skin"):
        discover_plugins(tmp_path)
    shutil.rmtree(tmp_path / "skin_service")
    write_plugin(tmp_path, "eye_service")
    write_plugin(tmp_path, "lung_service", name="lung", module="lung_service", prefix="LUNG_")
    with pytest.raises(ComponentError, match="port 50070 is already eye's"):
        discover_plugins(tmp_path)


@pytest.mark.parametrize("command", [["up"], ["serve", "gateway"]])
def test_up_and_serve_refuse_while_a_plugin_is_malformed(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(components, "PLUGIN_ERROR", "/srv/eye_service/component.json: kind")
    assert main(command) == 2
    assert capsys.readouterr().err == (
        f"medimg {command[0]}: error: /srv/eye_service/component.json: kind\n"
    )
