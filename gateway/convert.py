"""The only gateway module that touches *_pb2 types: request parsing and registry messages."""

from __future__ import annotations

from google.protobuf.message import DecodeError
from medimg.v1 import (
    diagnosis_service_pb2,
    model_info_pb2,
    model_registry_pb2,
    series_analysis_service_pb2,
    trainer_service_pb2,
)

from gateway.registry import Route, RouteError, RouteKind, make_route
from servicekit.errors import InvalidArgument

_KIND_TO_PROTO = {
    RouteKind.IMAGE: model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
    RouteKind.SERIES: model_info_pb2.MODEL_KIND_SERIES_ANALYZER,
}
_PROTO_TO_KIND = {proto: kind for kind, proto in _KIND_TO_PROTO.items()}


def diagnose_disease(request: bytes) -> str:
    """Returns the disease of a serialized DiagnoseRequest."""
    try:
        return diagnosis_service_pb2.DiagnoseRequest.FromString(request).disease
    except DecodeError:
        raise InvalidArgument("the request is not a valid DiagnoseRequest") from None


def model_info_disease(request: bytes) -> str:
    """Returns the disease of a serialized GetModelInfoRequest."""
    try:
        return diagnosis_service_pb2.GetModelInfoRequest.FromString(request).disease
    except DecodeError:
        raise InvalidArgument("the request is not a valid GetModelInfoRequest") from None


def series_model_info_disease(request: bytes) -> str:
    """Returns the disease of a serialized GetSeriesModelInfoRequest."""
    try:
        return series_analysis_service_pb2.GetSeriesModelInfoRequest.FromString(request).disease
    except DecodeError:
        raise InvalidArgument("the request is not a valid GetSeriesModelInfoRequest") from None


def series_upload_disease(first_message: bytes, method: str = "AnalyzeSeries") -> str:
    """Returns the disease of an upload's first AnalyzeSeriesRequest, which carries the metadata.

    `method` (AnalyzeSeries or InspectSeries, which share the request) names the call in
    the message of a refusal.
    """
    try:
        message = series_analysis_service_pb2.AnalyzeSeriesRequest.FromString(first_message)
    except DecodeError:
        raise InvalidArgument("the first message is not a valid AnalyzeSeriesRequest") from None
    if message.WhichOneof("part") != "metadata":
        raise InvalidArgument(f"the first message of {method} must carry the upload metadata")
    return message.metadata.disease


def publish_disease(request: bytes) -> str:
    """Returns the disease of a serialized PublishRequest."""
    try:
        return trainer_service_pb2.PublishRequest.FromString(request).disease
    except DecodeError:
        raise InvalidArgument("the request is not a valid PublishRequest") from None


def published_models_request(page_token: str, page_size: int) -> bytes:
    """Returns a serialized ListPublishedModelsRequest for one page."""
    request = trainer_service_pb2.ListPublishedModelsRequest(
        page_size=page_size, page_token=page_token
    )
    return request.SerializeToString()


def published_models_page(response: bytes) -> tuple[list[str], str]:
    """Returns the diseases of a serialized ListPublishedModelsResponse and its next token.

    Raises:
        DecodeError: the bytes are not a ListPublishedModelsResponse.
    """
    page = trainer_service_pb2.ListPublishedModelsResponse.FromString(response)
    return [model.disease for model in page.published_models], page.next_page_token


def model_info_request(route: Route) -> bytes:
    """Returns the serialized request for the description of a route's model."""
    if route.kind is RouteKind.IMAGE:
        return diagnosis_service_pb2.GetModelInfoRequest(disease=route.disease).SerializeToString()
    request = series_analysis_service_pb2.GetSeriesModelInfoRequest(disease=route.disease)
    return request.SerializeToString()


def parse_model_info(route: Route, response: bytes) -> model_info_pb2.ModelInfo:
    """Returns the ModelInfo of a serialized GetModelInfo or GetSeriesModelInfo response.

    Raises:
        DecodeError: the bytes are not a response of the route's contract.
    """
    if route.kind is RouteKind.IMAGE:
        return diagnosis_service_pb2.GetModelInfoResponse.FromString(response).model
    return series_analysis_service_pb2.GetSeriesModelInfoResponse.FromString(response).model


def registered_model(
    route: Route, model: model_info_pb2.ModelInfo | None, unavailable_reason: str = ""
) -> model_registry_pb2.RegisteredModel:
    """Returns the registry's description of a route, with its model when it answered."""
    entry = model_registry_pb2.RegisteredModel(
        disease=route.disease,
        kind=_KIND_TO_PROTO[route.kind],
        available=model is not None,
        unavailable_reason=unavailable_reason,
        replica_count=len(route.addresses),
    )
    if model is not None:
        entry.model.CopyFrom(model)
    return entry


def route_from_register(request: model_registry_pb2.RegisterModelRequest) -> Route:
    """Returns the route a RegisterModelRequest asks for; raises InvalidArgument when malformed."""
    kind = _PROTO_TO_KIND.get(request.kind)
    if kind is None:
        raise InvalidArgument(
            "kind must be MODEL_KIND_IMAGE_CLASSIFIER or MODEL_KIND_SERIES_ANALYZER"
        )
    try:
        return make_route(request.disease, kind, [a.strip() for a in request.addresses])
    except RouteError as exc:
        raise InvalidArgument(str(exc)) from None
