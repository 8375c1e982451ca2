"""Tests of the CNN, its SavedModel export and the training command, on tiny runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from servicekit.classifier.card import MARKDOWN_CARD_FILE
from servicekit.classifier.train_command import next_version
from skin_service import train
from skin_service.data import write_dataset
from skin_service.domain import LABELS
from skin_service.model import build_model, load_for_inference
from skin_service.model_card import (
    CLINICAL_WARNING,
    INPUT_KEY,
    OUTPUT_KEY,
    SIGNATURE_NAME,
    latest_version,
    load_model_card,
)

# Every label, few images, one epoch, small input: seconds, not minutes.
TINY = [
    "--generated-count-per-label", "6",
    "--evaluation-count-per-label", "3",
    "--epochs", "1",
    "--batch-size", "8",
    "--input-size", "32",
    "--seed", "11",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns the model folder of one tiny training run on generated images."""
    out = tmp_path_factory.mktemp("trained") / "skin-tiny"
    assert train.main([*TINY, "--out", str(out)]) == 0
    return out


def test_a_training_run_writes_tf_servings_layout_with_a_card(trained: Path) -> None:
    assert latest_version(trained) == 1
    assert (trained / "1" / "saved_model.pb").is_file()
    assert {p.name for p in trained.iterdir()} == {"1", "model_card.json", MARKDOWN_CARD_FILE}


def test_the_export_has_exactly_the_services_input_and_output_keys(trained: Path) -> None:
    signature = tf.saved_model.load(str(trained / "1")).signatures[SIGNATURE_NAME]

    _, inputs = signature.structured_input_signature
    assert list(inputs) == [INPUT_KEY]
    assert inputs[INPUT_KEY].shape.as_list() == [None, 32, 32, 3]
    assert inputs[INPUT_KEY].dtype == tf.float32
    assert list(signature.structured_outputs) == [OUTPUT_KEY]


def test_the_exported_model_returns_one_probability_per_label(trained: Path) -> None:
    predict = load_for_inference(trained)

    probabilities = predict(np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32))

    assert probabilities.shape == (4, len(LABELS))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_the_card_describes_a_demo_model_and_its_evaluation(trained: Path) -> None:
    card = load_model_card(trained)

    assert (card.name, card.version, card.labels, card.input_size) == ("skin-tiny", 1, LABELS, 32)
    assert card.demo_model and card.warning == CLINICAL_WARNING
    assert "seed 11, 6 images per label" in card.data
    assert "seed 1000011, 3 images per label" in card.evaluation
    assert sum(map(sum, card.confusion_matrix)) == 3 * len(LABELS)
    assert 0.0 <= card.metrics["accuracy"] <= 1.0
    assert str(card.training["command"]).startswith("medimg train skin --generated-count")
    markdown = (trained / MARKDOWN_CARD_FILE).read_text()
    assert "not for clinical use" in markdown
    assert "| true \\ predicted | melanoma | common_nevus | atypical_nevus |" in markdown


def test_training_twice_with_one_seed_gives_the_same_model(trained: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"

    assert train.main([*TINY, "--out", str(again)]) == 0

    batch = np.random.default_rng(1).random((6, 32, 32, 3), dtype=np.float32)
    assert np.array_equal(load_for_inference(trained)(batch), load_for_inference(again)(batch))


def test_a_second_run_into_the_same_folder_adds_the_next_version(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "7").mkdir()
    (tmp_path / "notes").mkdir()

    assert next_version(tmp_path) == 8
    assert next_version(tmp_path / "absent") == 1


def test_augmentation_is_off_at_inference() -> None:
    model = build_model(32)
    batch = np.random.default_rng(2).random((3, 32, 32, 3), dtype=np.float32)

    assert np.array_equal(model(batch, training=False), model(batch, training=False))
    assert model.output_shape == (None, len(LABELS))


def test_it_trains_on_a_folder_of_labelled_images(tmp_path: Path) -> None:
    write_dataset(tmp_path / "photos", count_per_label=5, seed=3, size=64)
    out = tmp_path / "model"

    code = train.main(
        ["--data", str(tmp_path / "photos"), "--epochs", "1", "--input-size", "32",
         "--validation-split", "0.4", "--out", str(out)]
    )  # fmt: skip

    assert code == 0
    card = load_model_card(out)
    assert not card.demo_model and card.warning == ""
    assert card.data == "folder photos (15 images, 0 unreadable skipped)"
    assert sum(map(sum, card.confusion_matrix)) == 2 * len(LABELS)


def test_it_skips_unreadable_images_and_says_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dataset(tmp_path, count_per_label=2, seed=3, size=48)
    (tmp_path / "melanoma" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "melanoma" / "notes.txt").write_text("not an image, not counted")

    examples = train.read_folder(tmp_path, input_size=24)

    assert examples.images.shape == (6, 24, 24, 3)
    assert sorted(examples.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert "skipped 1 unreadable" in capsys.readouterr().out


def test_it_refuses_a_folder_whose_labels_differ_and_lists_what_it_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("melanoma", "benign"):
        (tmp_path / name).mkdir()

    code = train.main(["--data", str(tmp_path), "--out", str(tmp_path / "out")])

    assert code == 2
    error = capsys.readouterr().err
    assert "melanoma, common_nevus, atypical_nevus" in error
    assert "found: benign, melanoma" in error
    assert not (tmp_path / "out").exists()


def test_it_refuses_a_label_without_readable_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dataset(tmp_path, count_per_label=1, seed=3, size=48)
    (tmp_path / "common_nevus" / "0000.png").write_bytes(b"")

    code = train.main(["--data", str(tmp_path), "--out", str(tmp_path / "out")])

    assert code == 2
    assert "no readable images for: common_nevus" in capsys.readouterr().err
