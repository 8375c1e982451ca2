"""Tests of port planning and of the port-in-use check."""

from __future__ import annotations

import pytest

from medimg_cli.components import GATEWAY, SKIN, WEB
from medimg_cli.ports import (
    PortError,
    check_port_free,
    check_ports_free,
    find_free_port,
    plan_ports,
    resolve_free_ports,
    wait_until_listening,
)
from servicekit.settings import SettingsError


def test_it_names_the_port_the_component_and_the_way_out_when_a_port_is_taken(
    listener: int,
) -> None:
    with pytest.raises(PortError) as caught:
        check_port_free("127.0.0.1", listener, "gateway", "pass --gateway-port")
    assert str(caught.value) == (
        f"port {listener} (gateway) is already in use; "
        "stop the other program or pass --gateway-port"
    )


def test_it_accepts_a_free_port() -> None:
    check_port_free("127.0.0.1", find_free_port("127.0.0.1"), "gateway", "pass --gateway-port")


def test_it_reports_every_taken_port_and_ports_given_twice(listener: int) -> None:
    free = find_free_port("127.0.0.1")
    wanted = {"skin": listener, "mri": free, "trainer": free}
    with pytest.raises(PortError) as caught:
        check_ports_free("127.0.0.1", wanted, {"skin": "set SKIN_PORT"})
    lines = str(caught.value).splitlines()
    assert lines == [
        f"port {listener} (skin) is already in use; stop the other program or set SKIN_PORT",
        f"port {free} is given to more than one component (mri, trainer)",
    ]


def test_a_flag_beats_the_variable_which_beats_the_moved_default() -> None:
    env = {"SKIN_PORT": "6001", "GATEWAY_PORT": "6000"}
    planned = plan_ports([GATEWAY, SKIN, WEB], env, offset=100, overrides={"gateway": 7000})
    assert planned == {"gateway": 7000, "skin": 6001, "web": 8100}


def test_it_names_the_variable_of_a_bad_port() -> None:
    with pytest.raises(SettingsError, match="SKIN_PORT must be an integer, got 'abc'"):
        plan_ports([SKIN], {"SKIN_PORT": "abc"})


def test_it_refuses_an_offset_that_leaves_the_port_range() -> None:
    with pytest.raises(PortError, match=r"port 66061 \(skin\) is out of range"):
        plan_ports([SKIN], {}, offset=16000)


def test_port_zero_becomes_a_free_port() -> None:
    resolved = resolve_free_ports({"gateway": 0, "web": 8000}, "127.0.0.1")
    assert resolved["gateway"] > 0
    assert resolved["web"] == 8000


async def test_it_waits_until_a_port_listens(listener: int) -> None:
    assert await wait_until_listening("127.0.0.1", listener, timeout_s=2)
    assert not await wait_until_listening("127.0.0.1", find_free_port("127.0.0.1"), timeout_s=0.2)
