"""Tests of the pure MRI preprocessing: normalisation, resizing, model inputs and slice order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mri_service.domain import (
    PASSES,
    PHASES,
    PRE,
    model_inputs,
    normalise_slice,
    position_along_normal,
    preprocess_slice,
    slice_order,
)
from mri_service.model import SliceClassifier, count_convolutions, probabilities

stored_slices = hnp.arrays(
    np.int16, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40)
)


@given(stored_slices)
def test_normalised_slices_span_0_to_255_or_are_blank(pixels: np.ndarray) -> None:
    plane = normalise_slice(pixels)
    assert plane.dtype == np.float32
    if pixels.min() == pixels.max():
        assert not plane.any()
    else:
        assert plane.min() == pytest.approx(0.0)
        assert plane.max() == pytest.approx(255.0, rel=1e-5)


@given(stored_slices, st.floats(0.1, 10.0), st.floats(-1000.0, 1000.0))
def test_normalisation_ignores_the_scanner_scale(
    pixels: np.ndarray, slope: float, intercept: float
) -> None:
    rescaled = pixels.astype(np.float64) * slope + intercept
    np.testing.assert_allclose(normalise_slice(rescaled), normalise_slice(pixels), atol=0.05)


def test_preprocessing_resizes_to_the_model_input_within_0_255() -> None:
    pixels = np.random.default_rng(1).integers(0, 4000, (256, 200)).astype(np.int16)
    plane = preprocess_slice(pixels, 128)
    assert plane.shape == (128, 128)
    assert plane.dtype == np.float32
    assert plane.min() >= 0.0 and plane.max() <= 255.0


def test_preprocessing_refuses_a_volume() -> None:
    with pytest.raises(ValueError, match="2-D"):
        preprocess_slice(np.zeros((2, 4, 4)), 32)


def test_model_inputs_put_pre_in_single_and_the_passes_in_scantype_order() -> None:
    planes = {phase: np.full((5, 32, 32), i, dtype=np.float32) for i, phase in enumerate(PHASES)}
    inputs = model_inputs(planes)
    assert inputs["single"].shape == (5, 1, 32, 32)
    assert inputs["scantype"].shape == (5, 3, 32, 32)
    assert inputs["single"][0, 0, 0, 0] == PHASES.index(PRE)
    assert [inputs["scantype"][0, c, 0, 0] for c in range(3)] == [PHASES.index(p) for p in PASSES]


def test_slices_follow_position_not_given_order() -> None:
    assert slice_order([30.0, 10.0, 20.0], [1, 2, 3]) == [1, 2, 0]


def test_instance_number_orders_slices_without_positions() -> None:
    assert slice_order([None, 1.0, None], [3, 1, 2]) == [1, 2, 0]


def test_it_refuses_slices_with_no_ordering_key() -> None:
    with pytest.raises(ValueError, match="neither"):
        slice_order([None, 1.0], [1, None])


def test_position_follows_the_normal_of_an_oblique_plane() -> None:
    # Rows along x, columns tilted 45 degrees between y and z: the normal is (0, -s, s).
    s = 2**-0.5
    orientation = [1.0, 0.0, 0.0, 0.0, s, s]
    low = position_along_normal(orientation, [0.0, 0.0, 0.0])
    high = position_along_normal(orientation, [0.0, -1.0, 1.0])
    assert high - low == pytest.approx(2 * s)


def test_the_classifier_has_vgg19s_sixteen_convolutions_and_one_logit_per_slice() -> None:
    torch.manual_seed(0)
    model = SliceClassifier(3, width=0.0625).eval()
    assert count_convolutions(model) == 16
    out = probabilities(model, torch.rand(4, 3, 64, 64) * 255)
    assert out.shape == (4,)
    assert bool(((out >= 0) & (out <= 1)).all())


def test_the_full_width_network_has_vgg19s_channel_counts() -> None:
    widths = [
        m.out_channels
        for m in SliceClassifier(1, width=1.0).modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert widths == [64, 64, 128, 128, *[256] * 4, *[512] * 8]
