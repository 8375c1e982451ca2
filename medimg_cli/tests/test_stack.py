"""Tests of what `medimg up` starts and the environment it gives each child."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from medimg_cli.components import (
    BUILT_INS,
    BY_NAME,
    DICOM,
    GATEWAY,
    MRI,
    SKIN,
    TRAINER,
    WEB,
    Component,
    ServiceKind,
    module_has_main,
)
from medimg_cli.stack import (
    PlanError,
    child_environment,
    child_specs,
    choose_components,
    port_hint,
    state_environment,
    state_root,
    stop_grace,
    where_line,
)

ALL_PORTS = {
    "skin": 50061,
    "mri": 50062,
    "trainer": 50063,
    "gateway": 50051,
    "dicom": 11112,
    "web": 8000,
}
STATE_ROOT = Path("/srv/medimg/var")


def only_gateway(component: Component) -> bool:
    return component is GATEWAY


def test_the_table_holds_every_built_in_with_its_prefix_port_and_kind() -> None:
    # Disease services scaffolded into this checkout join the table too; not counted here.
    rows = [(c.name, c.module, c.env_prefix, c.default_port, c.kind) for c in BUILT_INS]
    assert rows == [
        ("skin", "skin_service", "SKIN_", 50061, ServiceKind.IMAGE),
        ("mri", "mri_service", "MRI_", 50062, ServiceKind.SERIES),
        ("trainer", "trainer_service", "TRAINER_", 50063, ServiceKind.TRAINER),
        ("gateway", "gateway", "GATEWAY_", 50051, None),
        ("dicom", "dicom_receiver", "DICOM_", 11112, None),
        ("web", "web", "WEB_", 8000, None),
    ]


def test_it_starts_what_is_installed_and_skips_the_rest() -> None:
    present, skipped = choose_components(None, only_gateway)
    assert present == [GATEWAY]
    assert [c for c in skipped if c in BUILT_INS] == [SKIN, MRI, TRAINER, DICOM, WEB]


def test_only_narrows_the_components() -> None:
    present, skipped = choose_components(["gateway", "web"], only_gateway)
    assert present == [GATEWAY]
    assert skipped == [WEB]


def test_it_refuses_an_unknown_component() -> None:
    with pytest.raises(PlanError, match="unknown component lung; choose from skin, mri"):
        choose_components(["lung"], only_gateway)


def test_the_gateway_gets_the_routes_of_the_started_services_and_its_state_dir() -> None:
    env = child_environment(GATEWAY, ALL_PORTS, base={"HOME": "/root"}, state_root=STATE_ROOT)
    assert env["GATEWAY_ROUTES"] == (
        "skin=image@127.0.0.1:50061;mri=series@127.0.0.1:50062;trainer=trainer@127.0.0.1:50063"
    )
    assert env["GATEWAY_STATE_DIR"] == str(STATE_ROOT / "gateway")
    assert env["GATEWAY_PORT"] == "50051"
    assert env["GATEWAY_HOST"] == "127.0.0.1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HOME"] == "/root"


def test_the_gateway_alone_gets_no_routes() -> None:
    env = child_environment(GATEWAY, {"gateway": 50051}, base={}, state_root=STATE_ROOT)
    assert env["GATEWAY_ROUTES"] == ""


def test_a_service_gets_its_port_and_keeps_the_callers_settings() -> None:
    base = {"SKIN_LOG_LEVEL": "DEBUG", "SKIN_PORT": "1"}
    env = child_environment(SKIN, ALL_PORTS, base=base, state_root=STATE_ROOT)
    assert env["SKIN_PORT"] == "50061"
    assert env["SKIN_LOG_LEVEL"] == "DEBUG"
    assert "GATEWAY_ROUTES" not in env


def test_the_trainer_gets_its_port_and_nothing_about_the_gateway() -> None:
    # The gateway asks the trainer for its published models; the trainer calls nobody.
    ports = {**ALL_PORTS, "trainer": 50163, "gateway": 50151}
    env = child_environment(
        TRAINER, ports, base={"TRAINER_LOG_LEVEL": "DEBUG"}, state_root=STATE_ROOT
    )
    assert env["TRAINER_PORT"] == "50163"
    assert env["TRAINER_LOG_LEVEL"] == "DEBUG"
    assert [key for key in env if key.startswith("TRAINER_") and "GATEWAY" in key] == []
    assert "TRAINER_ADVERTISE_ADDR" not in env
    assert "GATEWAY_ROUTES" not in env
    gateway = child_environment(GATEWAY, ports, base={}, state_root=STATE_ROOT)
    assert "trainer=trainer@127.0.0.1:50163" in gateway["GATEWAY_ROUTES"]


def test_the_web_tier_is_told_where_the_gateway_is() -> None:
    env = child_environment(WEB, ALL_PORTS, base={}, state_root=STATE_ROOT)
    assert env["WEB_PORT"] == "8000"
    assert env["GATEWAY_ADDR"] == "127.0.0.1:50051"


def test_the_dicom_receiver_is_told_the_gateway_and_gets_a_spool_beside_its_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DICOM_SPOOL_DIR", raising=False)
    ports = {**ALL_PORTS, "gateway": 50151, "dicom": 11212}
    base = {"DICOM_GATEWAY_ADDRESS": "elsewhere:1", "DICOM_DESTINATION": "PACS@pacs:104"}
    env = child_environment(DICOM, ports, base=base, state_root=STATE_ROOT)
    assert env["DICOM_PORT"] == "11212"
    assert env["DICOM_GATEWAY_ADDRESS"] == "127.0.0.1:50151"
    assert env["DICOM_SPOOL_DIR"] == str(STATE_ROOT / "dicom")
    assert env["DICOM_DESTINATION"] == "PACS@pacs:104"
    assert "GATEWAY_ROUTES" not in env


def test_the_dicom_receivers_spool_set_by_the_caller_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DICOM_SPOOL_DIR", "/srv/spool")
    env = child_environment(DICOM, ALL_PORTS, base=dict(os.environ), state_root=STATE_ROOT)
    assert env["DICOM_SPOOL_DIR"] == "/srv/spool"


def test_the_dicom_receiver_starts_after_the_gateway_and_is_not_routed() -> None:
    present, _ = choose_components(None, lambda component: True)
    names = [c.name for c in present]
    assert names.index("dicom") == names.index("gateway") + 1
    env = child_environment(GATEWAY, ALL_PORTS, base={}, state_root=STATE_ROOT)
    assert "dicom" not in env["GATEWAY_ROUTES"]


def test_state_goes_under_var_of_the_folder_up_runs_in_or_where_the_caller_says() -> None:
    here = Path("/home/ana/study")
    assert state_root(here, {}) == here / "var"
    assert state_root(here, {"MEDIMG_STATE_DIR": "/data/medimg"}) == Path("/data/medimg")
    assert state_root(here, {"MEDIMG_STATE_DIR": "  "}) == here / "var"


def test_two_stacks_side_by_side_share_no_state() -> None:
    here = Path("/home/ana/study")
    first, second = state_root(here, {}), state_root(here, {}, port_offset=100)
    assert second == here / "var" / "offset-100"
    paths = []
    for root in (first, second):
        for component in (GATEWAY, TRAINER, WEB, DICOM):
            env = child_environment(component, ALL_PORTS, base={}, state_root=root)
            paths.append({v for k, v in env.items() if k in state_environment(component, root)})
    first_paths, second_paths = set().union(*paths[:4]), set().union(*paths[4:])
    assert len(first_paths) == 5 and len(second_paths) == 5
    assert not first_paths & second_paths


def test_the_web_tier_keeps_its_database_and_media_under_the_state_root() -> None:
    env = child_environment(WEB, ALL_PORTS, base={}, state_root=STATE_ROOT)
    assert env["DATABASE_URL"] == f"sqlite:///{STATE_ROOT / 'web' / 'db.sqlite3'}"
    assert env["WEB_MEDIA_ROOT"] == str(STATE_ROOT / "web" / "media")
    assert child_environment(TRAINER, ALL_PORTS, base={}, state_root=STATE_ROOT)[
        "TRAINER_DATA_DIR"
    ] == str(STATE_ROOT / "trainer")


def test_a_database_the_caller_names_is_kept() -> None:
    base = {"DATABASE_URL": "postgres://db/medimg", "WEB_MEDIA_ROOT": ""}
    env = child_environment(WEB, ALL_PORTS, base=base, state_root=STATE_ROOT)
    assert env["DATABASE_URL"] == "postgres://db/medimg"
    assert env["WEB_MEDIA_ROOT"] == str(STATE_ROOT / "web" / "media")


def test_each_child_runs_its_module_with_this_python() -> None:
    specs = child_specs([SKIN, GATEWAY], ALL_PORTS, base={}, state_root=STATE_ROOT)
    assert [spec.argv for spec in specs] == [
        (sys.executable, "-m", "skin_service"),
        (sys.executable, "-m", "gateway"),
    ]


def test_a_child_gets_its_own_grace_and_a_margin_before_sigkill() -> None:
    assert stop_grace(SKIN, {"SKIN_GRACE_SECONDS": "2"}) == 7.0
    assert stop_grace(SKIN, {"SKIN_GRACE_SECONDS": "2", "SKIN_DRAIN_DELAY_SECONDS": "3"}) == 10.0
    assert stop_grace(SKIN, {}) == 15.0


def test_the_hint_names_the_flag_or_the_variable() -> None:
    assert port_hint(GATEWAY) == "pass --gateway-port"
    assert port_hint(MRI) == "set MRI_PORT (or pass --port-offset)"


def test_it_says_where_each_component_is() -> None:
    assert where_line("gateway", 50051) == (
        "gateway: 127.0.0.1:50051 (gRPC; `medimg models` lists its routes)"
    )
    assert where_line("web", 8000) == "web: http://127.0.0.1:8000"
    assert where_line("skin", 50061) == "skin: 127.0.0.1:50061 (gRPC, routed by the gateway)"
    assert where_line("dicom", 11112) == (
        "dicom: 127.0.0.1:11112 (DICOM C-STORE and C-ECHO, AE title from DICOM_AE_TITLE)"
    )


def test_a_package_counts_as_installed_only_with_a_main() -> None:
    assert module_has_main("medimg_cli")
    assert not module_has_main("medimg_cli.tests")
    assert not module_has_main("no_such_package_medimg")
    assert {"skin", "mri", "trainer", "gateway", "dicom", "web"} <= set(BY_NAME)
