"""What every image classifier shares: ranking probabilities and their proto answers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from medimg.v1 import diagnosis_service_pb2, model_info_pb2

from servicekit.backend import ModelInfo


@dataclass(frozen=True)
class Ranked:
    """Class probabilities of one image, highest first."""

    scores: tuple[tuple[str, float], ...]

    @property
    def top_label(self) -> str:
        """Returns the most probable label."""
        return self.scores[0][0]

    @property
    def top_score(self) -> float:
        """Returns the probability of the most probable label."""
        return self.scores[0][1]


def rank(probabilities: np.ndarray, labels: tuple[str, ...]) -> Ranked:
    """Returns the labels with their probabilities, highest first (ties keep label order)."""
    if probabilities.shape != (len(labels),):
        raise ValueError(f"expected {len(labels)} probabilities, got shape {probabilities.shape}")
    order = sorted(range(len(labels)), key=lambda i: -float(probabilities[i]))
    return Ranked(tuple((labels[i], float(probabilities[i])) for i in order))


def to_diagnose_response(
    ranked: Ranked, info: ModelInfo, *, disease: str
) -> diagnosis_service_pb2.DiagnoseResponse:
    """Returns the Diagnose answer for one ranked image."""
    return diagnosis_service_pb2.DiagnoseResponse(
        disease=disease,
        top_label=ranked.top_label,
        top_score=ranked.top_score,
        scores=[
            diagnosis_service_pb2.ClassScore(label=label, score=score)
            for label, score in ranked.scores
        ],
        model_name=info.name,
        model_version=info.version,
        demo_model=info.demo_model,
    )


def to_model_info(info: ModelInfo, *, disease: str) -> model_info_pb2.ModelInfo:
    """Returns the proto description of an image classifier served under disease."""
    return model_info_pb2.ModelInfo(
        disease=disease,
        model_name=info.name,
        model_version=info.version,
        kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
        labels=info.labels,
        input_height_px=info.input_height_px,
        input_width_px=info.input_width_px,
        input_channels=info.input_channels,
        backend=info.backend,
        demo_model=info.demo_model,
        description=info.description,
    )
