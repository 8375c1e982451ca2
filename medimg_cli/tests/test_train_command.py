"""Tests of `medimg train DISEASE ...`: it hands the rest of the line to that disease's trainer."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from medimg_cli.__main__ import main


@pytest.fixture
def recorded_trainer(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Installs a `toy_service.train` whose main records its argv and exits 3."""
    calls: list[list[str]] = []

    def toy_main(argv: list[str] | None = None) -> int:
        calls.append(list(argv or []))
        return 3

    trainer = types.ModuleType("toy_service.train")
    trainer.main = toy_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "toy_service", types.ModuleType("toy_service"))
    monkeypatch.setitem(sys.modules, "toy_service.train", trainer)
    return calls


def test_train_passes_every_following_argument_to_the_trainer(
    recorded_trainer: list[list[str]],
) -> None:
    code = main(["train", "toy", "--epochs", "2", "--data", "photos", "--help"])

    assert code == 3
    assert recorded_trainer == [["--epochs", "2", "--data", "photos", "--help"]]


def test_train_says_when_a_disease_has_no_trainer(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "freckle"])

    assert code == 2
    assert capsys.readouterr().err == (
        "medimg train: error: freckle has no trainer (no module freckle_service.train)\n"
    )


def test_train_refuses_a_disease_name_that_is_not_a_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "../skin"]) == 2
    assert "not a disease name: '../skin'" in capsys.readouterr().err


def test_train_skin_runs_the_skin_trainer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "skin", "--data", str(tmp_path / "absent"), "--out", str(tmp_path)])

    assert code == 2
    assert "medimg train skin: error: --data" in capsys.readouterr().err
