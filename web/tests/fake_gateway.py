"""An in-process gRPC server that plays the gateway for the web tier's client tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_info_pb2,
    model_registry_pb2,
    model_registry_pb2_grpc,
    series_analysis_service_pb2,
    series_analysis_service_pb2_grpc,
)

LABELS = ("melanoma", "common_nevus", "atypical_nevus")


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, reason: str) -> None:
    """Ends the call as a medimg service does: the code, the message and an ErrorInfo."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="medimg"))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    context.abort_with_status(rpc_status.to_status(status))


@dataclass
class FakeGateway(
    diagnosis_service_pb2_grpc.DiagnosisServiceServicer,
    series_analysis_service_pb2_grpc.SeriesAnalysisServiceServicer,
    model_registry_pb2_grpc.ModelRegistryServicer,
):
    """Answers like the gateway; `image` bytes of the form b"code:NAME" end with that status."""

    name: str = "fake"
    request_ids: list[str] = field(default_factory=list)
    time_remaining: list[float | None] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    refuse_series_above: int = 10_000_000
    delay_s: float = 0.0
    preview_sizes: list[int] = field(default_factory=list)
    dicom_reports: list[bool] = field(default_factory=list)

    def _seen(self, context: Any) -> None:
        self.request_ids.append(dict(context.invocation_metadata()).get("x-request-id", ""))
        self.time_remaining.append(context.time_remaining())

    def Diagnose(self, request: Any, context: Any) -> diagnosis_service_pb2.DiagnoseResponse:
        self._seen(context)
        time.sleep(self.delay_s)
        if request.image.startswith(b"code:"):
            code = grpc.StatusCode[request.image[5:].decode()]
            abort(context, code, "the image is truncated or corrupt; upload it again", "WHY")
        pb = diagnosis_service_pb2
        return pb.DiagnoseResponse(
            disease=request.disease,
            top_label="melanoma",
            top_score=0.7,
            scores=[
                pb.ClassScore(label="melanoma", score=0.7),
                pb.ClassScore(label="atypical_nevus", score=0.2),
                pb.ClassScore(label="common_nevus", score=0.1),
            ],
            model_name=self.name,
            model_version="2026.11.1",
            demo_model=True,
        )

    def GetModelInfo(
        self, request: Any, context: Any
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        self._seen(context)
        if request.disease != "skin":
            abort(context, grpc.StatusCode.NOT_FOUND, "no such disease", "DISEASE_UNKNOWN")
        return diagnosis_service_pb2.GetModelInfoResponse(model=model_info("skin"))

    def _read_upload(self, request_iterator: Iterator[Any], context: Any) -> str:
        """Reads an upload to its end; returns its disease (refusing one announced too large)."""
        disease = ""
        for message in request_iterator:
            if message.HasField("metadata"):
                disease = message.metadata.disease
                self.preview_sizes.append(message.metadata.preview_size_px)
                self.dicom_reports.append(message.metadata.dicom_reports)
                if message.metadata.total_size_bytes > self.refuse_series_above:
                    abort(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "the series is larger than this service accepts",
                        "SERIES_TOO_LARGE",
                    )
            else:
                self.chunks.append(message.chunk_data)
        return disease

    def AnalyzeSeries(
        self, request_iterator: Iterator[Any], context: Any
    ) -> series_analysis_service_pb2.AnalyzeSeriesResponse:
        self._seen(context)
        disease = self._read_upload(request_iterator, context)
        pb = series_analysis_service_pb2
        return pb.AnalyzeSeriesResponse(
            disease=disease,
            positive_slice_indices=[1],
            slices=[
                pb.SliceFinding(
                    slice_index=i,
                    positive=i == 1,
                    model_scores=[pb.ModelSliceScore(model_name="single", probability=0.1 + i)],
                    images=[
                        pb.SliceImage(
                            phase="pre",
                            sop_instance_uid=f"1.2.3.{i}",
                            instance_number=10 + i,
                            position_mm=-12.5 + i,
                        ),
                        # A header without InstanceNumber or position: both stay unset.
                        pb.SliceImage(phase="1st_pass", sop_instance_uid=f"1.2.4.{i}"),
                    ],
                )
                for i in range(2)
            ],
            slice_count=2,
            model_name="mri-demo",
            model_version="1",
            demo_model=True,
            timings=pb.SeriesTimings(upload_ms=1.5, prepare_ms=2.5, model_ms=3.5),
            study=study_summary(),
            preview_png=[b"\x89PNG-0", b"\x89PNG-1"],
            dicom_reports=(
                pb.DicomReports(measurement_report=b"SR", key_images=b"KOS")
                if self.dicom_reports[-1]
                else None
            ),
        )

    def InspectSeries(
        self, request_iterator: Iterator[Any], context: Any
    ) -> series_analysis_service_pb2.InspectSeriesResponse:
        self._seen(context)
        self._read_upload(request_iterator, context)
        return series_analysis_service_pb2.InspectSeriesResponse(study=study_summary())

    def GetSeriesModelInfo(
        self, request: Any, context: Any
    ) -> series_analysis_service_pb2.GetSeriesModelInfoResponse:
        return series_analysis_service_pb2.GetSeriesModelInfoResponse(model=model_info("mri"))

    def ListModels(self, request: Any, context: Any) -> model_registry_pb2.ListModelsResponse:
        self._seen(context)
        # One disease a page, as a gateway with a small page size answers: the client must
        # follow next_page_token to list both.
        if request.page_token == "":
            mri = model_registry_pb2.RegisteredModel(
                disease="mri",
                kind=model_info_pb2.MODEL_KIND_SERIES_ANALYZER,
                available=False,
                unavailable_reason="the service did not answer",
                replica_count=1,
            )
            return model_registry_pb2.ListModelsResponse(models=[mri], next_page_token="after-mri")
        if request.page_token != "after-mri":
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "bad page_token", "PAGE_TOKEN")
        skin = model_registry_pb2.RegisteredModel(
            disease="skin",
            kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
            model=model_info("skin"),
            available=True,
            replica_count=2,
        )
        return model_registry_pb2.ListModelsResponse(models=[skin])

    def RegisterModel(self, request: Any, context: Any) -> model_registry_pb2.RegisterModelResponse:
        abort(context, grpc.StatusCode.UNIMPLEMENTED, "not here", "UNIMPLEMENTED")
        raise AssertionError("unreachable")

    def UnregisterModel(
        self, request: Any, context: Any
    ) -> model_registry_pb2.UnregisterModelResponse:
        abort(context, grpc.StatusCode.UNIMPLEMENTED, "not here", "UNIMPLEMENTED")
        raise AssertionError("unreachable")


def study_summary() -> series_analysis_service_pb2.StudySummary:
    pb = series_analysis_service_pb2
    return pb.StudySummary(
        study_instance_uid="1.2.3",
        phases=[
            pb.SelectedPhase(
                phase="pre",
                series_instance_uid="1.2.3.10",
                series_description="dyn eTHRIVE",
                series_number=10,
                temporal_position=1,
                image_count=2,
            ),
            pb.SelectedPhase(
                phase="1st_pass", series_instance_uid="1.2.3.10", temporal_position=2, image_count=2
            ),
        ],
        unused_series=[
            pb.UnusedSeries(
                series_instance_uid="1.2.3.1",
                series_description="SURVEY",
                series_number=1,
                modality="MR",
                image_count=3,
                reason="a localiser",
            ),
            pb.UnusedSeries(series_instance_uid="1.2.3.9", modality="SR", reason="not an image"),
        ],
        skipped_files=[pb.SkippedFile(path="DICOMDIR", reason="a DICOMDIR")],
        slice_count=2,
        ordered_by="position",
        selected_by="multiphase",
    )


def model_info(disease: str) -> model_info_pb2.ModelInfo:
    return model_info_pb2.ModelInfo(
        disease=disease,
        model_name=f"{disease}-demo",
        model_version="2026.11.1",
        kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER
        if disease == "skin"
        else model_info_pb2.MODEL_KIND_SERIES_ANALYZER,
        labels=list(LABELS),
        input_height_px=96,
        input_width_px=96,
        input_channels=3,
        backend="embedded",
        demo_model=True,
    )


def serve(fake: FakeGateway) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    diagnosis_service_pb2_grpc.add_DiagnosisServiceServicer_to_server(fake, server)
    series_analysis_service_pb2_grpc.add_SeriesAnalysisServiceServicer_to_server(fake, server)
    model_registry_pb2_grpc.add_ModelRegistryServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
