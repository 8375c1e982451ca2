"""Translation between medimg.v1 protos and the skin domain: the only module touching *_pb2."""

from __future__ import annotations

from medimg.v1 import diagnosis_service_pb2

from servicekit import classification
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
    return classification.to_diagnose_response(ranked, info, disease=DISEASE)


def to_model_info_response(info: ModelInfo) -> diagnosis_service_pb2.GetModelInfoResponse:
    """Returns the GetModelInfo answer describing the loaded model."""
    return diagnosis_service_pb2.GetModelInfoResponse(
        model=classification.to_model_info(info, disease=DISEASE)
    )
