"""medimg.v1.SeriesAnalysisService for breast MRI: proto in, the analyzer, proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from medimg.v1 import series_analysis_service_pb2, series_analysis_service_pb2_grpc

from mri_service import convert
from mri_service.analysis import SeriesAnalyzer, Upload
from servicekit.server import ServiceBinding

SERVICE_NAME = "medimg.v1.SeriesAnalysisService"
Requests = AsyncIterator[series_analysis_service_pb2.AnalyzeSeriesRequest]


class MriSeriesServicer(series_analysis_service_pb2_grpc.SeriesAnalysisServiceServicer):
    """Translates the three RPCs to the analyzer (mri_service.analysis) and back."""

    def __init__(self, analyzer: SeriesAnalyzer) -> None:
        self.analyzer = analyzer

    async def AnalyzeSeries(
        self, request_iterator: Requests, context: Any
    ) -> series_analysis_service_pb2.AnalyzeSeriesResponse:
        """Returns the slices that show a tumour, for a study zip streamed in as chunks."""
        done = await self.analyzer.analyse(await upload_of(request_iterator))
        return convert.to_response(
            done.results,
            self.analyzer.card,
            done.study,
            done.previews,
            done.dicom,
            upload_ms=done.upload_ms,
            prepare_ms=done.prepare_ms,
            model_ms=done.model_ms,
        )

    async def InspectSeries(
        self, request_iterator: Requests, context: Any
    ) -> series_analysis_service_pb2.InspectSeriesResponse:
        """Returns the series a study's analysis would read, and previews, without the models."""
        found = await self.analyzer.inspect(await upload_of(request_iterator))
        return convert.to_inspect_response(found.study, found.previews)

    async def GetSeriesModelInfo(
        self, request: series_analysis_service_pb2.GetSeriesModelInfoRequest, context: Any
    ) -> series_analysis_service_pb2.GetSeriesModelInfoResponse:
        """Returns the description of the two slice models and how their results are fused."""
        convert.check_disease(request.disease)
        return convert.to_model_info_response(self.analyzer.card, self.analyzer.model_infos())


async def upload_of(requests: Requests) -> Upload:
    """Returns the upload a stream opens with its metadata; its chunks are read as they come."""
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        first = series_analysis_service_pb2.AnalyzeSeriesRequest()
    metadata = convert.to_upload_metadata(first)
    return Upload(
        chunks=convert.to_chunks(requests),
        declared_size=metadata.total_size_bytes or None,
        preview_size=metadata.preview_size_px or None,
        dicom_reports=metadata.dicom_reports,
    )


def binding(servicer: MriSeriesServicer) -> ServiceBinding:
    """Returns the binding that hosts the servicer on a server."""

    def add(server: grpc.aio.Server) -> None:
        series_analysis_service_pb2_grpc.add_SeriesAnalysisServiceServicer_to_server(
            servicer, server
        )

    return ServiceBinding(SERVICE_NAME, add)
