"""BreastWise's `average_results`: fuses the two models' slice decisions into one per slice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mri_service.domain import SCANTYPE, SINGLE

# A probability at or above this is a positive slice for one model.
DEFAULT_THRESHOLD = 0.5


def decide(
    probabilities: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> list[bool]:
    """Returns one model's decision per slice: positive when its probability reaches threshold."""
    return [float(p) >= threshold for p in probabilities]


def fuse(single: Sequence[bool], scantype: Sequence[bool]) -> list[bool]:
    """Returns the fused decision of each slice, in the same order.

    Both models positive: positive. Both negative: negative. When they disagree the
    slice is positive only if an adjacent slice (index ± 1) is one where both models
    agree on positive. "Neighbour is positive" is read as an *agreed* positive and is
    not applied recursively, so one result never depends on the order slices are
    visited in and a run of disagreements cannot spread along the series.

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(single) != len(scantype):
        raise ValueError(f"single has {len(single)} slices, scantype {len(scantype)}")
    agreed = [a and b for a, b in zip(single, scantype, strict=True)]
    fused: list[bool] = []
    for index, (a, b) in enumerate(zip(single, scantype, strict=True)):
        if a == b:
            fused.append(a)
            continue
        left = index > 0 and agreed[index - 1]
        right = index + 1 < len(agreed) and agreed[index + 1]
        fused.append(left or right)
    return fused


def positive_indices(fused: Sequence[bool]) -> list[int]:
    """Returns the indices of the positive slices, ascending."""
    return [index for index, positive in enumerate(fused) if positive]


@dataclass(frozen=True)
class SliceResult:
    """The fused decision of one slice and each model's probability for it."""

    index: int
    positive: bool
    scores: tuple[tuple[str, float], ...]  # (model name, probability), in MODEL_NAMES order


def analyse(
    probabilities: Mapping[str, Sequence[float] | np.ndarray], threshold: float = DEFAULT_THRESHOLD
) -> list[SliceResult]:
    """Returns every slice's result from each model's per-slice probabilities.

    Raises:
        ValueError: a model of the pair is missing, or the models saw different slice counts.
    """
    missing = [name for name in (SINGLE, SCANTYPE) if name not in probabilities]
    if missing:
        raise ValueError(f"no probabilities from {', '.join(missing)}")
    single, scantype = probabilities[SINGLE], probabilities[SCANTYPE]
    fused = fuse(decide(single, threshold), decide(scantype, threshold))
    return [
        SliceResult(
            index=index,
            positive=positive,
            scores=((SINGLE, float(single[index])), (SCANTYPE, float(scantype[index]))),
        )
        for index, positive in enumerate(fused)
    ]
