"""Tests of the lesion generator: deterministic, and the classes differ as the ABCD rule says."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from skin_service.data import (
    SEVERITY,
    GeneratedLesion,
    generate_dataset,
    generate_image,
    generate_lesion,
)
from skin_service.domain import DEFAULT_INPUT_SIZE, LABELS, preprocess

SAMPLES = 30


def _lesions(label: str) -> list[GeneratedLesion]:
    return [generate_lesion(label, np.random.default_rng([7, i]), 128) for i in range(SAMPLES)]


@pytest.fixture(scope="module")
def lesions() -> dict[str, list[GeneratedLesion]]:
    return {label: _lesions(label) for label in LABELS}


def _area(lesion: GeneratedLesion) -> float:
    return float(lesion.mask.mean())


def _asymmetry(lesion: GeneratedLesion) -> float:
    """Returns the share of the lesion whose mirror image through its centroid is not lesion."""
    ys, xs = np.nonzero(lesion.mask)
    mirrored_y = np.rint(2 * ys.mean() - ys).astype(int)
    mirrored_x = np.rint(2 * xs.mean() - xs).astype(int)
    size = lesion.mask.shape[0]
    within = (mirrored_y >= 0) & (mirrored_y < size) & (mirrored_x >= 0) & (mirrored_x < size)
    kept = lesion.mask[mirrored_y[within], mirrored_x[within]].sum()
    return 1.0 - float(kept) / len(ys)


def _colour_spread(lesion: GeneratedLesion) -> float:
    """Returns how much the lesion's pixels vary in colour, hue rather than brightness."""
    pixels = np.asarray(lesion.image, dtype=np.float32)[lesion.mask] / 255.0
    chroma = pixels / (pixels.sum(axis=1, keepdims=True) + 1e-3)
    return float(chroma.std(axis=0).sum())


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def test_the_same_seed_draws_the_same_pixels() -> None:
    first = generate_image("melanoma", np.random.default_rng(3))
    again = generate_image("melanoma", np.random.default_rng(3))

    assert first.tobytes() == again.tobytes()


def test_another_seed_draws_another_image() -> None:
    first = generate_image("common_nevus", np.random.default_rng(3))
    other = generate_image("common_nevus", np.random.default_rng(4))

    assert first.tobytes() != other.tobytes()


def test_a_dataset_is_reproducible_and_interleaves_the_labels() -> None:
    first = [(image.tobytes(), label) for image, label in generate_dataset(2, seed=5, size=64)]
    again = [(image.tobytes(), label) for image, label in generate_dataset(2, seed=5, size=64)]

    assert first == again
    assert [label for _, label in first] == list(LABELS) * 2


def test_a_larger_dataset_extends_a_smaller_one() -> None:
    small = [image.tobytes() for image, _ in generate_dataset(1, seed=5, size=64)]
    large = [image.tobytes() for image, _ in generate_dataset(2, seed=5, size=64)]

    assert large[: len(small)] == small


def test_images_are_rgb_of_the_requested_size() -> None:
    image = generate_image("atypical_nevus", np.random.default_rng(0), size=80)

    assert (image.mode, image.size) == ("RGB", (80, 80))


def test_it_refuses_an_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown label 'freckle'"):
        generate_image("freckle", np.random.default_rng(0))


def test_melanomas_are_larger_than_atypical_nevi_which_are_larger_than_common_nevi(
    lesions: dict[str, list[GeneratedLesion]],
) -> None:
    area = {label: _mean([_area(lesion) for lesion in lesions[label]]) for label in LABELS}

    assert area["melanoma"] > area["atypical_nevus"] > area["common_nevus"]


def test_melanomas_are_the_most_asymmetric_and_common_nevi_the_least(
    lesions: dict[str, list[GeneratedLesion]],
) -> None:
    asymmetry = {label: _mean([_asymmetry(les) for les in lesions[label]]) for label in LABELS}

    assert asymmetry["melanoma"] > asymmetry["atypical_nevus"] > asymmetry["common_nevus"]
    assert asymmetry["common_nevus"] < 0.05


def test_melanomas_have_the_most_colours_and_common_nevi_mostly_one(
    lesions: dict[str, list[GeneratedLesion]],
) -> None:
    counts = {label: [len(lesion.colours) for lesion in lesions[label]] for label in LABELS}

    assert (
        _mean(counts["melanoma"]) > _mean(counts["atypical_nevus"]) > _mean(counts["common_nevus"])
    )
    # Near a class border a lesion may look like its neighbour, but not often.
    assert np.mean(np.array(counts["common_nevus"]) == 1) >= 0.8
    assert np.mean(np.array(counts["atypical_nevus"]) == 2) >= 0.6
    assert np.mean(np.array(counts["melanoma"]) >= 3) >= 0.8


def test_a_melanomas_third_colour_is_black_blue_grey_or_red(
    lesions: dict[str, list[GeneratedLesion]],
) -> None:
    many = [lesion.colours for lesion in lesions["melanoma"] if len(lesion.colours) >= 3]

    assert many and all({"black", "blue_grey", "red"} & set(colours) for colours in many)


def test_each_lesions_severity_lies_in_its_labels_range(
    lesions: dict[str, list[GeneratedLesion]],
) -> None:
    for label in LABELS:
        low, high = SEVERITY[label]
        assert all(low <= lesion.severity <= high for lesion in lesions[label])


def test_melanomas_vary_most_in_colour_as_measured_on_the_pixels(
    lesions: dict[str, list[GeneratedLesion]],
) -> None:
    spread = {label: _mean([_colour_spread(les) for les in lesions[label]]) for label in LABELS}

    assert spread["melanoma"] > spread["atypical_nevus"] > spread["common_nevus"]


def test_preprocessing_gives_the_model_input_shape_and_range() -> None:
    image = generate_image("melanoma", np.random.default_rng(1))

    batch_item = preprocess(image, DEFAULT_INPUT_SIZE)

    assert batch_item.shape == (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE, 3)
    assert batch_item.dtype == np.float32
    assert 0.0 <= batch_item.min() < batch_item.max() <= 1.0


def test_preprocessing_keeps_the_centre_square_of_a_wide_photo() -> None:
    wide = Image.new("RGB", (300, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (100, 0, 200, 100))

    batch_item = preprocess(wide, 32)

    assert batch_item.shape == (32, 32, 3)
    assert np.allclose(batch_item[..., 2], 1.0) and np.allclose(batch_item[..., 0], 0.0)
