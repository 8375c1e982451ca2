"""Tests of `medimg train mri`: a tiny run writes a loadable model set; the shipped set is sound."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mri_service import phantom, train
from mri_service.backends.embedded import EmbeddedBackend
from mri_service.domain import MODEL_CHANNELS, MODEL_NAMES, model_inputs, preprocess_slice
from mri_service.model_card import CARD_FILE, MARKDOWN_CARD_FILE, load_model_card, weights_file

SHIPPED = Path(train.__file__).parent / "models" / "mri-demo"
TINY = [
    "--generated-count",
    "2",
    "--evaluation-count",
    "2",
    "--slices",
    "8",
    "--size",
    "64",
    "--positive-fraction",
    "1",
    "--input-size",
    "32",
    "--width",
    "0.05",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--threads",
    "1",
]


def _train(out: Path, *extra: str) -> list[str]:
    argv = [*TINY, *extra, "--out", str(out)]
    assert train.main(argv) == 0
    return argv


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        train.main(["--help"])
    assert exited.value.code == 0
    assert "--data" in capsys.readouterr().out


def test_a_tiny_run_writes_a_model_set_that_serving_loads(tmp_path: Path) -> None:
    out = tmp_path / "mri-tiny"
    argv = _train(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CARD_FILE, MARKDOWN_CARD_FILE, *(weights_file(n) for n in MODEL_NAMES)]
    )
    card = load_model_card(out)
    assert (card.name, card.version, card.width, card.input_size) == ("mri-tiny", 1, 0.05, 32)
    assert card.demo_model and card.threshold == 0.5
    assert card.training["command"] == " ".join(["medimg", "train", "mri", *argv])
    for name in (*MODEL_NAMES, "fused"):
        assert 0.0 <= card.metrics[name]["sensitivity"] <= 1.0
        assert 0.0 <= card.metrics[name]["specificity"] <= 1.0
    markdown = (out / MARKDOWN_CARD_FILE).read_text()
    assert "not for clinical use" in markdown and card.training["command"] in markdown
    for name in MODEL_NAMES:
        backend = EmbeddedBackend(out, name)
        backend.load()
        batch = np.zeros((3, MODEL_CHANNELS[name], 32, 32), dtype=np.float32)
        assert backend.predict(batch).shape == (3, 1)


def test_the_same_seed_trains_the_same_weights(tmp_path: Path) -> None:
    _train(tmp_path / "a")
    _train(tmp_path / "b")
    _train(tmp_path / "c", "--seed", "2")
    first, again, other = (
        torch.load(tmp_path / run / "single.pt", weights_only=True) for run in "abc"
    )
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_a_second_run_replaces_the_set_whole_and_raises_the_version(tmp_path: Path) -> None:
    out = tmp_path / "set"
    _train(out)
    _train(out, "--seed", "5")
    assert load_model_card(out).version == 2
    assert load_model_card(out).training["seed"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["set"], "staging folders were left behind"


def test_it_refuses_an_input_size_the_network_cannot_take(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*TINY, "--input-size", "48", "--out", str(tmp_path / "set")]
    assert train.main(argv) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()


def test_it_trains_on_a_folder_of_labelled_series(tmp_path: Path) -> None:
    data = tmp_path / "data"
    argv = ["--out", str(data), "--count", "3", "--slices", "8", "--size", "64"]
    assert phantom.main([*argv, "--positive-fraction", "1", "--seed", "4"]) == 0
    (data / "notes.txt").write_text("not a case")
    out = tmp_path / "set"
    assert (
        train.main([*TINY, "--data", str(data), "--validation-split", "0.3", "--out", str(out)])
        == 0
    )
    card = load_model_card(out)
    assert not card.demo_model
    assert "3 cases" in card.data
    held_out = card.metrics["fused"]
    assert held_out["positive_slices"] + held_out["negative_slices"] == 8


def test_it_refuses_a_data_folder_without_labelled_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = phantom.generate_series(phantom.PhantomSpec(slices=8, size=32))
    phantom.write_series_zip(series, tmp_path / "data" / "case.zip")  # no case.json beside it
    assert train.main([*TINY, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")]) == 2
    assert "no readable labelled case" in capsys.readouterr().err


def test_roc_auc_counts_the_share_of_correctly_ordered_pairs() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(np.float32)  # many ties
    truth = rng.random(40) < 0.4
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for p, n in itertools.product(scores[truth], scores[~truth])
    ]
    assert train.roc_auc(scores, truth) == pytest.approx(np.mean(pairs))


def test_the_shipped_model_set_loads_and_is_labelled_a_demo() -> None:
    card = load_model_card(SHIPPED)
    assert card.demo_model and card.warning
    assert card.version >= 1 and card.input_size % 32 == 0
    for name in (*MODEL_NAMES, "fused"):
        assert {"sensitivity", "specificity"} <= set(card.metrics[name])
    assert "medimg train mri" in str(card.training["command"])
    for name in MODEL_NAMES:
        assert (SHIPPED / weights_file(name)).stat().st_size < 2_000_000
        EmbeddedBackend(SHIPPED, name).load()
    document = json.loads((SHIPPED / CARD_FILE).read_text())
    assert document["metrics"]["fused"]["sensitivity"] == card.metrics["fused"]["sensitivity"]


def test_the_shipped_models_rank_lesion_slices_above_healthy_ones() -> None:
    card = load_model_card(SHIPPED)
    backends = {name: EmbeddedBackend(SHIPPED, name) for name in MODEL_NAMES}
    scores: dict[str, list[np.ndarray]] = {name: [] for name in MODEL_NAMES}
    truth = []
    # Seeds no training run draws from: case_specs seeds are drawn by default_rng.
    for seed in (7_000_001, 7_000_002, 7_000_003):
        series = phantom.generate_series(phantom.PhantomSpec(slices=24, size=256, seed=seed))
        planes = {
            phase: np.stack([preprocess_slice(s, card.input_size) for s in series.physical(phase)])
            for phase in series.phases
        }
        for name, batch in model_inputs(planes).items():
            backends[name].load()
            scores[name].append(backends[name].predict(batch)[:, 0])
        truth.append(np.asarray(series.positive))
    labels = np.concatenate(truth)
    assert labels.any() and not labels.all()
    assert train.roc_auc(np.concatenate(scores["scantype"]), labels) > 0.8
    assert train.roc_auc(np.concatenate(scores["single"]), labels) > 0.6
