"""Translation between medimg.v1 protos and the MRI domain: the only module touching *_pb2."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TYPE_CHECKING

from medimg.v1 import model_info_pb2, series_analysis_service_pb2

from mri_service.fusion import SliceResult
from mri_service.ingest.study import Study
from mri_service.model_card import ModelCard
from servicekit.backend import ModelInfo
from servicekit.errors import InvalidArgument, UnknownDisease

if TYPE_CHECKING:
    from mri_service.report import DicomReports

DISEASE = "mri"
MAX_PREVIEW_PX = 1024


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
    if not 0 <= first.metadata.preview_size_px <= MAX_PREVIEW_PX:
        raise InvalidArgument(f"preview_size_px must be between 0 and {MAX_PREVIEW_PX}")
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


def to_study_summary(study: Study) -> series_analysis_service_pb2.StudySummary:
    """Returns what the upload held and which of its series the models read."""
    pb = series_analysis_service_pb2
    return pb.StudySummary(
        study_instance_uid=study.study_uid,
        phases=[
            pb.SelectedPhase(
                phase=phase.name,
                series_instance_uid=phase.series_uid,
                series_description=phase.description,
                series_number=phase.number,
                temporal_position=phase.temporal_position,
                image_count=len(phase.slices),
            )
            for phase in study.phases
        ],
        unused_series=[
            pb.UnusedSeries(
                series_instance_uid=u.series_uid,
                series_description=u.description,
                series_number=u.number,
                modality=u.modality,
                image_count=u.image_count,
                reason=u.reason,
            )
            for u in study.unused
        ],
        skipped_files=[pb.SkippedFile(path=s.path, reason=s.reason) for s in study.skipped],
        slice_count=study.slice_count,
        ordered_by=study.ordered_by,
        selected_by=study.selected_by,
    )


def _slice_images(study: Study, index: int) -> list[series_analysis_service_pb2.SliceImage]:
    return [
        series_analysis_service_pb2.SliceImage(
            phase=phase.name,
            sop_instance_uid=phase.slices[index].sop_instance_uid,
            instance_number=phase.slices[index].instance_number,
            position_mm=phase.position_mm(index),
        )
        for phase in study.phases
    ]


def to_inspect_response(
    study: Study, previews: Sequence[bytes]
) -> series_analysis_service_pb2.InspectSeriesResponse:
    """Returns the InspectSeries answer: the study's summary and its previews."""
    return series_analysis_service_pb2.InspectSeriesResponse(
        study=to_study_summary(study), preview_png=list(previews)
    )


def to_response(
    results: Sequence[SliceResult],
    card: ModelCard,
    study: Study,
    previews: Sequence[bytes],
    dicom: DicomReports | None = None,
    *,
    upload_ms: float,
    prepare_ms: float,
    model_ms: float,
) -> series_analysis_service_pb2.AnalyzeSeriesResponse:
    """Returns the AnalyzeSeries answer for the analysed slices of one study."""
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
                images=_slice_images(study, r.index),
            )
            for r in results
        ],
        study=to_study_summary(study),
        preview_png=list(previews),
        slice_count=len(results),
        model_name=card.name,
        model_version=str(card.version),
        demo_model=card.demo_model,
        timings=pb.SeriesTimings(upload_ms=upload_ms, prepare_ms=prepare_ms, model_ms=model_ms),
        dicom_reports=(
            pb.DicomReports(
                measurement_report=dicom.measurement_report, key_images=dicom.key_images
            )
            if dicom is not None
            else None
        ),
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
