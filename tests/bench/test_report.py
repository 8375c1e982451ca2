"""The bench report's rows, table and results document; no timing is measured or asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.bench import report


def row(value: float, comparison: report.Comparison = ">=", name: str = "r") -> report.Ratio:
    return report.Ratio(name, value, 0.7, comparison, (report.Figure("a", 1.0, "x/s"),))


def test_a_row_is_met_on_the_right_side_of_its_target() -> None:
    assert row(0.7).met and row(0.9).met and not row(0.69).met
    assert row(0.7, "<=").met and row(0.5, "<=").met and not row(0.71, "<=").met


def test_a_nan_row_is_never_met_and_is_kept_as_null() -> None:
    assert not row(math.nan).met
    assert row(math.nan).to_json()["value"] is None


def test_a_ratio_keeps_the_figures_it_came_from() -> None:
    served, limit = report.Figure("served", 30.0, "img/s"), report.Figure("limit", 60.0, "img/s")
    beside = report.Figure("model only", 90.0, "img/s")
    made = report.ratio("served / limit", served, limit, ">=", 0.7, beside)
    assert made.value == 0.5 and not made.met
    assert made.to_json()["figures"] == {
        "served": {"value": 30.0, "unit": "img/s"},
        "limit": {"value": 60.0, "unit": "img/s"},
        "model only": {"value": 90.0, "unit": "img/s"},
    }
    zero = report.ratio("x", served, report.Figure("none", 0.0, "img/s"), ">=", 1.0)
    assert math.isnan(zero.value)


def test_whole_numbers_read_back_from_json_print_as_such() -> None:
    assert report.number(0) == "0" and report.number(2) == "2" and report.number(0.5) == "0.50"
    assert report.number(1302.4) == "1302" and report.number(45.21) == "45.2"


def test_the_table_shows_every_row_with_target_and_verdict() -> None:
    text = report.table([("skin", row(0.9).to_json()), ("mri", row(1.5, "<=").to_json())])
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["bench", "ratio", "value", "target", "verdict"]
    assert "≥ 0.70" in lines[1] and "met" in lines[1] and "a 1 x/s" in lines[1]
    assert "≤ 0.70" in lines[2] and "MISSED" in lines[2]


def test_benches_of_one_run_merge_into_one_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "var" / "bench" / "results.json"
    monkeypatch.setattr(report, "RUN_ID", "run-1")
    report.record("skin", [row(0.9)], 1.0, path=path)
    report.record("mri", [row(0.5)], 2.0, {"slices": 32}, path=path)
    document = json.loads(path.read_text())
    assert document["run"]["id"] == "run-1"
    assert set(document["benches"]) == {"skin", "mri"}
    assert document["benches"]["mri"]["notes"] == {"slices": 32}
    assert document["benches"]["skin"]["ratios"]["r"]["met"] is True
    assert document["run"]["machine"]["cpu_count"] >= 1
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it

    monkeypatch.setattr(report, "RUN_ID", "run-2")
    report.record("gateway", [row(1.0)], 1.0, path=path)
    assert set(json.loads(path.read_text())["benches"]) == {"gateway"}


def test_the_summary_names_the_benches_that_wrote_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.json"
    monkeypatch.setattr(report, "RUN_ID", "run-1")
    document = report.record("skin", [row(0.9), row(0.1, name="s")], 1.0, path=path)
    text = report.summary(document, expected=("gateway", "skin"))
    assert "1 of 2 targets met" in text
    assert "no results from: gateway" in text


def test_two_rows_of_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twice"):
        report.record("skin", [row(0.9), row(0.1)], 1.0, path=tmp_path / "results.json")


def test_quick_reads_bench_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("BENCH_QUICK", value)
        assert report.quick() is expected
