"""Property-based tests of BreastWise's fusion of the two models' slice decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mri_service.fusion import analyse, decide, fuse, positive_indices

decisions = st.lists(st.booleans(), max_size=64)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[list[bool], list[bool]]:
    single = draw(decisions)
    scantype = draw(st.lists(st.booleans(), min_size=len(single), max_size=len(single)))
    return single, scantype


@given(pairs())
def test_it_keeps_one_decision_per_slice(pair: tuple[list[bool], list[bool]]) -> None:
    single, scantype = pair
    assert len(fuse(single, scantype)) == len(single)


@given(pairs())
def test_it_keeps_every_slice_the_models_agree_on(pair: tuple[list[bool], list[bool]]) -> None:
    single, scantype = pair
    fused = fuse(single, scantype)
    for a, b, f in zip(single, scantype, fused, strict=True):
        if a == b:
            assert f == a


@given(pairs())
def test_a_disagreement_is_positive_exactly_when_a_neighbour_is_an_agreed_positive(
    pair: tuple[list[bool], list[bool]],
) -> None:
    single, scantype = pair
    fused = fuse(single, scantype)
    agreed = [a and b for a, b in zip(single, scantype, strict=True)]
    for i, (a, b) in enumerate(zip(single, scantype, strict=True)):
        if a != b:
            neighbours = agreed[max(0, i - 1) : i] + agreed[i + 1 : i + 2]
            assert fused[i] == any(neighbours)


@given(pairs())
def test_it_does_not_depend_on_which_model_is_which(pair: tuple[list[bool], list[bool]]) -> None:
    single, scantype = pair
    assert fuse(single, scantype) == fuse(scantype, single)


@given(pairs())
def test_it_reads_the_series_the_same_in_either_direction(
    pair: tuple[list[bool], list[bool]],
) -> None:
    single, scantype = pair
    assert fuse(single[::-1], scantype[::-1]) == fuse(single, scantype)[::-1]


@given(pairs(), st.data())
def test_more_positives_from_a_model_never_remove_a_fused_positive(
    pair: tuple[list[bool], list[bool]], data: st.DataObject
) -> None:
    single, scantype = pair
    if not single:
        return
    flip = data.draw(st.integers(0, len(single) - 1))
    raised = [*single]
    raised[flip] = True
    before, after = fuse(single, scantype), fuse(raised, scantype)
    assert all(a <= b for a, b in zip(before, after, strict=True))


@given(pairs())
def test_fused_positives_lie_between_agreement_and_either_model(
    pair: tuple[list[bool], list[bool]],
) -> None:
    single, scantype = pair
    for a, b, f in zip(single, scantype, fuse(single, scantype), strict=True):
        assert (a and b) <= f <= (a or b)


def test_an_isolated_disagreement_is_negative() -> None:
    assert fuse([False, True, False], [False, False, False]) == [False, False, False]


def test_a_disagreement_beside_an_agreed_positive_is_positive() -> None:
    assert fuse([True, True, False], [True, False, False]) == [True, True, False]


def test_disagreements_do_not_spread_along_the_series() -> None:
    single = [True, True, True, True]
    scantype = [True, False, False, False]
    assert fuse(single, scantype) == [True, True, False, False]


def test_it_refuses_sequences_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="single has 2 slices, scantype 1"):
        fuse([True, False], [True])


@given(st.lists(st.floats(0.0, 1.0), max_size=32), st.floats(0.01, 0.99))
def test_decide_is_positive_from_the_threshold_up(probs: list[float], threshold: float) -> None:
    assert decide(probs, threshold) == [p >= threshold for p in probs]


def test_analyse_pairs_each_slice_with_both_scores_and_the_fused_decision() -> None:
    results = analyse({"single": [0.9, 0.2, 0.1], "scantype": [0.8, 0.7, 0.4]})
    assert [r.positive for r in results] == [True, True, False]
    assert positive_indices([r.positive for r in results]) == [0, 1]
    names = [name for name, _ in results[1].scores]
    assert names == ["single", "scantype"]
    assert [p for _, p in results[1].scores] == pytest.approx([0.2, 0.7])


def test_analyse_needs_both_models() -> None:
    with pytest.raises(ValueError, match="scantype"):
        analyse({"single": [0.5]})
