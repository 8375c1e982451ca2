"""Tests of the demo model shipped in skin_service/models: it does what its card says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servicekit.classifier.card import MARKDOWN_CARD_FILE
from servicekit.classifier.training import predict_in_batches
from skin_service import train
from skin_service.domain import DEFAULT_INPUT_SIZE, LABELS
from skin_service.model import load_for_inference
from skin_service.model_card import ModelCard, latest_version, load_model_card

SHIPPED = Path(train.__file__).parent / "models" / "skin-demo"
# Neither the training seed nor the seed of the card's own evaluation set.
CHECK_SEED = 20_260_101
CHECK_COUNT_PER_LABEL = 200


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return load_model_card(SHIPPED)


def test_the_shipped_model_is_labelled_a_demo_not_for_clinical_use(card: ModelCard) -> None:
    assert card.demo_model
    assert "not for clinical use" in card.warning
    assert "not for clinical use" in (SHIPPED / MARKDOWN_CARD_FILE).read_text()


def test_the_shipped_model_matches_what_the_service_expects(card: ModelCard) -> None:
    assert card.labels == LABELS
    assert card.input_size == DEFAULT_INPUT_SIZE
    assert latest_version(SHIPPED) == card.version


def test_the_card_records_the_command_that_produced_the_model(card: ModelCard) -> None:
    command = str(card.training["command"])

    assert command.startswith("medimg train skin ")
    assert command in (SHIPPED / MARKDOWN_CARD_FILE).read_text()


def test_the_shipped_model_is_a_few_megabytes_at_most() -> None:
    total = sum(path.stat().st_size for path in SHIPPED.rglob("*") if path.is_file())

    assert total < 5 * 1024 * 1024


def test_the_shipped_model_reaches_its_cards_accuracy_on_images_it_never_saw(
    card: ModelCard,
) -> None:
    assert CHECK_SEED not in (
        card.training["seed"],
        int(card.training["seed"]) + train.EVALUATION_SEED_OFFSET,
    )
    examples = train.generated_examples(CHECK_COUNT_PER_LABEL, CHECK_SEED, card.input_size)

    predicted = predict_in_batches(load_for_inference(SHIPPED), examples.images)

    accuracy = float(np.mean(predicted == examples.labels))
    assert accuracy >= card.metrics["accuracy"] - 0.02
