"""`python -m gateway`: a bad setting stops the start with one clear line and exit code 2."""

from __future__ import annotations

import pytest

from gateway.__main__ import main


def test_it_exits_2_naming_the_variable_of_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_ROUTES", "skin=video@127.0.0.1:50061")
    assert main() == 2
    message = capsys.readouterr().err
    assert message.startswith("gateway: GATEWAY_ROUTES:")
    assert message.count("\n") == 1
