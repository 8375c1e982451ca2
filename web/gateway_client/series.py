"""Calls to the gateway's SeriesAnalysisService: a series zip streamed in, its analysis out."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import IO, Final

from medimg.v1 import series_analysis_service_pb2, series_analysis_service_pb2_grpc

from web.gateway_client.channel import Connection, elapsed_ms, request_id_for
from web.gateway_client.convert import description, probability, slice_image, study
from web.gateway_client.results import (
    ModelDescription,
    SeriesAnalysis,
    SeriesInspection,
    SliceFinding,
    SliceScore,
)

# Series zips travel in chunks of this size, so no single message is large.
SERIES_CHUNK_BYTES: Final = 256 * 1024


class SeriesCalls(Connection):
    """GetSeriesModelInfo, AnalyzeSeries and InspectSeries, for series analyzers."""

    _series: series_analysis_service_pb2_grpc.SeriesAnalysisServiceStub

    def series_model_info(self, *, disease: str, request_id: str | None = None) -> ModelDescription:
        """Returns the description of the models that analyse a disease's series."""
        request = series_analysis_service_pb2.GetSeriesModelInfoRequest(disease=disease)
        method = self._series.GetSeriesModelInfo
        timeout, rid = self.config.info_timeout_s, request_id_for(request_id)
        return description(self._call("GetSeriesModelInfo", method, request, timeout, rid).model)

    def analyze_series(
        self,
        *,
        chunks: Iterable[bytes],
        disease: str,
        total_size_bytes: int = 0,
        preview_size_px: int = 0,
        dicom_reports: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> SeriesAnalysis:
        """Streams a series zip to the gateway chunk by chunk and returns its analysis.

        With `preview_size_px` > 0 the answer carries a PNG of every pre-contrast slice of
        that size, so nobody else decodes the series again for thumbnails. With
        `dicom_reports` it carries the result as DICOM too (`measurement_report`,
        `key_images`), empty from a service that does not make them yet.
        This is grpc's synchronous API, which reports the service's own status when the
        service ends the upload early; grpc.aio can lose that status (grpc/grpc#36066,
        see gateway/upstream.py `FirstStatus`), which is why this client does not use it.
        The caller runs it in a thread; `chunks` is consumed in grpc's own thread.
        """
        rid = request_id_for(request_id)
        started = time.perf_counter()
        messages = upload_messages(
            chunks, disease, total_size_bytes, preview_size_px, dicom_reports=dicom_reports
        )
        timeout = timeout_s or self.config.series_timeout_s
        response = self._call("AnalyzeSeries", self._series.AnalyzeSeries, messages, timeout, rid)
        timings = response.timings
        return SeriesAnalysis(
            disease=response.disease or disease,
            positive_slice_indices=tuple(response.positive_slice_indices),
            slices=tuple(
                SliceFinding(
                    slice_index=finding.slice_index,
                    positive=finding.positive,
                    scores=tuple(
                        SliceScore(s.model_name, probability(s.probability))
                        for s in finding.model_scores
                    ),
                    images=tuple(slice_image(image) for image in finding.images),
                )
                for finding in response.slices
            ),
            slice_count=response.slice_count,
            model_name=response.model_name,
            model_version=response.model_version,
            demo_model=response.demo_model,
            upload_ms=timings.upload_ms,
            prepare_ms=timings.prepare_ms,
            model_ms=timings.model_ms,
            request_id=rid,
            elapsed_ms=elapsed_ms(started),
            study=study(response.study),
            previews=tuple(response.preview_png),
            measurement_report=response.dicom_reports.measurement_report,
            key_images=response.dicom_reports.key_images,
        )

    def inspect_series(
        self,
        *,
        chunks: Iterable[bytes],
        disease: str,
        total_size_bytes: int = 0,
        preview_size_px: int = 0,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> SeriesInspection:
        """Streams a series zip like `analyze_series` and returns what the service would read.

        The service validates the whole study (the same refusals as AnalyzeSeries:
        INVALID_ARGUMENT with a reason such as SERIES_LAYOUT) without running the models.
        """
        rid = request_id_for(request_id)
        started = time.perf_counter()
        messages = upload_messages(chunks, disease, total_size_bytes, preview_size_px)
        timeout = timeout_s or self.config.series_timeout_s
        response = self._call("InspectSeries", self._series.InspectSeries, messages, timeout, rid)
        return SeriesInspection(
            study=study(response.study),
            previews=tuple(response.preview_png),
            request_id=rid,
            elapsed_ms=elapsed_ms(started),
        )


def file_chunks(stream: IO[bytes], chunk_bytes: int = SERIES_CHUNK_BYTES) -> Iterator[bytes]:
    """Yields a binary file's content in chunks, for `analyze_series` and `inspect_series`."""
    while chunk := stream.read(chunk_bytes):
        yield chunk


def upload_messages(
    chunks: Iterable[bytes],
    disease: str,
    total_size_bytes: int,
    preview_size_px: int = 0,
    *,
    dicom_reports: bool = False,
) -> Iterator[series_analysis_service_pb2.AnalyzeSeriesRequest]:
    pb = series_analysis_service_pb2
    yield pb.AnalyzeSeriesRequest(
        metadata=pb.SeriesUploadMetadata(
            disease=disease,
            total_size_bytes=total_size_bytes,
            preview_size_px=preview_size_px,
            dicom_reports=dicom_reports,
        )
    )
    for chunk in chunks:
        if chunk:
            yield pb.AnalyzeSeriesRequest(chunk_data=chunk)
