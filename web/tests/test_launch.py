"""How `medimg up` starts the web tier (medimg_cli.components.web_launch)."""

from __future__ import annotations

import sys

import pytest

from medimg_cli.components import WEB, web_launch

PORTS = {"gateway": 50999, "web": 8000}


def test_it_runs_python_m_web_and_names_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_DEBUG", raising=False)
    launch = web_launch(WEB, PORTS)
    assert launch.argv == (sys.executable, "-m", "web")
    assert launch.env["GATEWAY_ADDR"] == "127.0.0.1:50999"


@pytest.mark.parametrize("variable", ["SECRET_KEY", "SECRET_KEY_FILE", "WEB_DEBUG"])
def test_development_mode_is_the_default_unless_the_caller_chose(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for name in ("SECRET_KEY", "SECRET_KEY_FILE", "WEB_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    assert web_launch(WEB, PORTS).env["WEB_DEBUG"] == "true"
    monkeypatch.setenv(variable, "false" if variable == "WEB_DEBUG" else "x")
    assert "WEB_DEBUG" not in web_launch(WEB, PORTS).env
