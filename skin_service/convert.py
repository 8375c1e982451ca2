"""Translation between medimg.v1 protos and the skin domain: the only module touching *_pb2."""

from __future__ import annotations

from medimg.v1 import diagnosis_service_pb2, model_info_pb2

from servicekit.backend import ModelInfo
from servicekit.errors import UnknownDisease
from skin_service.domain import Ranked

DISEASE = "skin"


def check_disease(disease: str) -> None:
    """Accepts an empty disease (a direct call) or "skin"; anything else is not served here."""
    if disease not in ("", DISEASE):
        raise UnknownDisease(f"this service diagnoses {DISEASE!r}, not {disease!r}")


def to_image_bytes(request: diagnosis_service_pb2.DiagnoseRequest) -> bytes:
    """Returns the uploaded image of a Diagnose request, after checking its disease."""
    check_disease(request.disease)
    return request.image


def to_diagnose_response(ranked: Ranked, info: ModelInfo) -> diagnosis_service_pb2.DiagnoseResponse:
    """Returns the Diagnose answer for one ranked image."""
    return diagnosis_service_pb2.DiagnoseResponse(
        disease=DISEASE,
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


def to_model_info_response(info: ModelInfo) -> diagnosis_service_pb2.GetModelInfoResponse:
    """Returns the GetModelInfo answer describing the loaded model."""
    return diagnosis_service_pb2.GetModelInfoResponse(
        model=model_info_pb2.ModelInfo(
            disease=DISEASE,
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
    )
