"""The web tier's one client of the gateway: every gRPC call, its deadline and its error mapping.

One module per remote service (diagnosis, series, registry, trainer), the errors, the
values the calls return (results) and the protobuf conversions (convert); callers use
the names below, `from web import gateway_client`.
"""

from web.gateway_client.channel import CHANNEL_OPTIONS, GatewayConfig
from web.gateway_client.client import GatewayClient, config_from_settings, get_gateway
from web.gateway_client.errors import (
    STATUS_OUTCOMES,
    TRAINER_OUTCOMES,
    GatewayError,
    Outcome,
    outcome_for,
    outcome_for_name,
)
from web.gateway_client.results import (
    ClassScore,
    Diagnosis,
    EpochProgress,
    LivePrediction,
    ModelDescription,
    RegisteredModel,
    SelectedPhase,
    SeriesAnalysis,
    SeriesInspection,
    SkippedFile,
    SliceFinding,
    SliceImage,
    SliceScore,
    StudySummary,
    TrainerProject,
    TrainingJobState,
    TrainSettings,
    UnusedSeries,
    UploadReceipt,
)
from web.gateway_client.series import SERIES_CHUNK_BYTES, file_chunks
from web.gateway_client.trainer import PredictionStream, TrainingEvents

__all__ = [
    "CHANNEL_OPTIONS",
    "SERIES_CHUNK_BYTES",
    "STATUS_OUTCOMES",
    "TRAINER_OUTCOMES",
    "ClassScore",
    "Diagnosis",
    "EpochProgress",
    "GatewayClient",
    "GatewayConfig",
    "GatewayError",
    "LivePrediction",
    "ModelDescription",
    "Outcome",
    "PredictionStream",
    "RegisteredModel",
    "SelectedPhase",
    "SeriesAnalysis",
    "SeriesInspection",
    "SkippedFile",
    "SliceFinding",
    "SliceImage",
    "SliceScore",
    "StudySummary",
    "TrainSettings",
    "TrainerProject",
    "TrainingEvents",
    "TrainingJobState",
    "UnusedSeries",
    "UploadReceipt",
    "config_from_settings",
    "file_chunks",
    "get_gateway",
    "outcome_for",
    "outcome_for_name",
]
