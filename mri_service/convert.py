"""Translation between medimg.v1 protos and the MRI domain: the only module touching *_pb2."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence

from medimg.v1 import model_info_pb2, series_analysis_service_pb2

from mri_service.fusion import SliceResult
from mri_service.model_card import ModelCard
from servicekit.backend import ModelInfo
from servicekit.errors import InvalidArgument, UnknownDisease

DISEASE = "mri"


def check_disease(disease: str) -> None:
    """Accepts an empty disease (a direct call) or "mri"; anything else is not served here."""
    if disease not in ("", DISEASE):
        raise UnknownDisease(f"this service analyses {DISEASE!r} series, not {disease!r}")


def to_upload_metadata(
    first: series_analysis_service_pb2.AnalyzeSeriesRequest,
) -> series_analysis_service_pb2.SeriesUploadMetadata:
    """Returns the metadata that must open an upload, after checking its disease.

    Raises:
        InvalidArgument: the first message carries chunk data instead.
        UnknownDisease: the upload is for another disease.
    """
    if first.WhichOneof("part") != "metadata":
        raise InvalidArgument("AnalyzeSeries needs the upload metadata as its first message")
    check_disease(first.metadata.disease)
    if first.metadata.total_size_bytes < 0:
        raise InvalidArgument("total_size_bytes must not be negative")
    return first.metadata


async def to_chunks(
    requests: AsyncIterable[series_analysis_service_pb2.AnalyzeSeriesRequest],
) -> AsyncIterator[bytes]:
    """Yields the zip bytes of the messages after the metadata.

    Raises:
        InvalidArgument: a later message carries metadata again.
    """
    async for request in requests:
        if request.WhichOneof("part") != "chunk_data":
            raise InvalidArgument("only the first AnalyzeSeries message may carry metadata")
        yield request.chunk_data


def to_response(
    results: Sequence[SliceResult],
    card: ModelCard,
    *,
    upload_ms: float,
    prepare_ms: float,
    model_ms: float,
) -> series_analysis_service_pb2.AnalyzeSeriesResponse:
    """Returns the AnalyzeSeries answer for the analysed slices of one series."""
    pb = series_analysis_service_pb2
    return pb.AnalyzeSeriesResponse(
        disease=DISEASE,
        positive_slice_indices=[r.index for r in results if r.positive],
        slices=[
            pb.SliceFinding(
                slice_index=r.index,
                positive=r.positive,
                model_scores=[
                    pb.ModelSliceScore(model_name=name, probability=p) for name, p in r.scores
                ],
            )
            for r in results
        ],
        slice_count=len(results),
        model_name=card.name,
        model_version=str(card.version),
        demo_model=card.demo_model,
        timings=pb.SeriesTimings(upload_ms=upload_ms, prepare_ms=prepare_ms, model_ms=model_ms),
    )


def to_model_info_response(
    card: ModelCard, infos: Sequence[ModelInfo]
) -> series_analysis_service_pb2.GetSeriesModelInfoResponse:
    """Returns the GetSeriesModelInfo answer describing the model set."""
    first = infos[0]
    models = ", ".join(f"{info.name} ({info.input_channels} channel(s))" for info in infos)
    description = f"Slice models: {models}; width x{card.width:g} of VGG19."
    if card.warning:
        description = f"{card.warning} {description}"
    return series_analysis_service_pb2.GetSeriesModelInfoResponse(
        model=model_info_pb2.ModelInfo(
            disease=DISEASE,
            model_name=card.name,
            model_version=str(card.version),
            kind=model_info_pb2.MODEL_KIND_SERIES_ANALYZER,
            labels=first.labels,
            input_height_px=card.input_size,
            input_width_px=card.input_size,
            input_channels=max(info.input_channels for info in infos),
            backend=first.backend,
            demo_model=card.demo_model,
            description=description,
        )
    )
