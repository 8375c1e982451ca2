"""Small upstream services and a gateway harness for the gateway's in-process tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_info_pb2,
    series_analysis_service_pb2,
    series_analysis_service_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
)

from gateway.router import Router
from gateway.servicer import build_bindings
from gateway.settings import GatewaySettings
from servicekit import errors
from servicekit.server import Server, ServiceBinding
from servicekit.settings import ServerSettings


class FakeDiagnosis(diagnosis_service_pb2_grpc.DiagnosisServiceServicer):
    """Answers with its own name as model name, so tests can see which replica answered."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.request_ids: list[str] = []
        self.time_remaining: list[float | None] = []
        self.model_info_calls = 0

    async def Diagnose(
        self, request: diagnosis_service_pb2.DiagnoseRequest, context: Any
    ) -> diagnosis_service_pb2.DiagnoseResponse:
        metadata = dict(context.invocation_metadata() or ())
        self.request_ids.append(str(metadata.get("x-request-id", "")))
        self.time_remaining.append(context.time_remaining())
        if request.image == b"bad":
            raise errors.InvalidImage("the file is not a readable image", reason="IMAGE_UNREADABLE")
        if request.image == b"loading":
            raise errors.ModelNotReady("the model is still loading")
        return diagnosis_service_pb2.DiagnoseResponse(
            disease=request.disease, top_label="benign", top_score=0.9, model_name=self.name
        )

    async def GetModelInfo(
        self, request: diagnosis_service_pb2.GetModelInfoRequest, context: Any
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        self.model_info_calls += 1
        return diagnosis_service_pb2.GetModelInfoResponse(
            model=model_info_pb2.ModelInfo(
                disease=request.disease,
                model_name=self.name,
                model_version="1",
                kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
                labels=["benign", "malignant"],
            )
        )


@dataclass
class FakeSeries(series_analysis_service_pb2_grpc.SeriesAnalysisServiceServicer):
    """Counts the chunks it reads; refuses uploads announced as larger than max_size_bytes.

    With fail_after_first_chunk, it answers UNAVAILABLE once the first chunk arrived.
    `completed` counts the uploads it analysed (or inspected) to the end; `methods` names
    the method of every call it took.
    """

    max_size_bytes: int = 1_000_000
    fail_after_first_chunk: bool = False
    calls: int = 0
    completed: int = 0
    methods: list[str] = field(default_factory=list)
    time_remaining: list[float | None] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def _read(
        self,
        method: str,
        request_iterator: AsyncIterator[series_analysis_service_pb2.AnalyzeSeriesRequest],
        context: Any,
    ) -> str:
        """Reads an upload to its end as the MRI service does; returns its disease."""
        self.calls += 1
        self.methods.append(method)
        self.time_remaining.append(context.time_remaining())
        disease = ""
        try:
            async for message in request_iterator:
                if message.HasField("metadata"):
                    disease = message.metadata.disease
                    if message.metadata.total_size_bytes > self.max_size_bytes:
                        raise errors.InvalidSeries("the series is larger than this service accepts")
                else:
                    self.chunks.append(message.chunk_data)
                    self.first_chunk.set()
                    if self.fail_after_first_chunk:
                        raise errors.ModelNotReady("the model went away")
            await asyncio.sleep(0.01)  # the analysis, during which a cancellation can land
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        self.completed += 1
        return disease

    async def AnalyzeSeries(
        self,
        request_iterator: AsyncIterator[series_analysis_service_pb2.AnalyzeSeriesRequest],
        context: Any,
    ) -> series_analysis_service_pb2.AnalyzeSeriesResponse:
        disease = await self._read("AnalyzeSeries", request_iterator, context)
        return series_analysis_service_pb2.AnalyzeSeriesResponse(
            disease=disease, slice_count=len(self.chunks), model_name="fake-series"
        )

    async def InspectSeries(
        self,
        request_iterator: AsyncIterator[series_analysis_service_pb2.AnalyzeSeriesRequest],
        context: Any,
    ) -> series_analysis_service_pb2.InspectSeriesResponse:
        await self._read("InspectSeries", request_iterator, context)
        return series_analysis_service_pb2.InspectSeriesResponse(
            study=series_analysis_service_pb2.StudySummary(
                study_instance_uid="1.2.3", slice_count=len(self.chunks)
            )
        )

    async def GetSeriesModelInfo(
        self, request: series_analysis_service_pb2.GetSeriesModelInfoRequest, context: Any
    ) -> series_analysis_service_pb2.GetSeriesModelInfoResponse:
        return series_analysis_service_pb2.GetSeriesModelInfoResponse(
            model=model_info_pb2.ModelInfo(
                disease=request.disease,
                model_name="fake-series",
                kind=model_info_pb2.MODEL_KIND_SERIES_ANALYZER,
            )
        )


RUNNING = trainer_service_pb2.TRAINING_JOB_STATE_RUNNING
JOB = "projects/0123456789ab/trainingJobs/ba9876543210"


def _job_event(epoch: int) -> trainer_service_pb2.TrainResponse:
    return trainer_service_pb2.TrainResponse(
        job=trainer_service_pb2.TrainingJob(
            name=JOB,
            state=RUNNING,
            latest_metrics=trainer_service_pb2.EpochMetrics(epoch=epoch, total_epochs=3),
        )
    )


@dataclass
class FakeTrainer(trainer_service_pb2_grpc.TrainerServiceServicer):
    """A TrainerService shaped for proxy tests, not a trainer: it records what reached it.

    Project names pick behaviours: "projects/missing" is NOT_FOUND with an ErrorInfo,
    "projects/flaky" is UNAVAILABLE on its first call, "projects/endless" trains until
    cancelled, and "projects/failing" sends one event and then fails. `published` is
    what ListPublishedModels lists, in pages of at most `max_page_size`; Publish adds to it.
    """

    calls: dict[str, int] = field(default_factory=dict)
    request_ids: list[str] = field(default_factory=list)
    time_remaining: list[float | None] = field(default_factory=list)
    uploaded: list[bytes] = field(default_factory=list)
    stored: int = 0
    first_upload: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: set[str] = field(default_factory=set)
    cancelled_event: asyncio.Event = field(default_factory=asyncio.Event)
    published: list[str] = field(default_factory=list)
    max_page_size: int = 1000
    page_tokens: list[str] = field(default_factory=list)

    def _record(self, method: str, context: Any) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        metadata = dict(context.invocation_metadata() or ())
        self.request_ids.append(str(metadata.get("x-request-id", "")))
        self.time_remaining.append(context.time_remaining())

    def _cancelled(self, method: str) -> None:
        self.cancelled.add(method)
        self.cancelled_event.set()

    def _project(self, name: str) -> trainer_service_pb2.Project:
        if name == "projects/missing":
            raise errors.NotFound(f"no project is called {name!r}", reason="PROJECT_NOT_FOUND")
        if name == "projects/flaky" and self.calls.get("flaky", 0) == 0:
            self.calls["flaky"] = 1
            raise errors.Unavailable("the trainer is restarting")
        return trainer_service_pb2.Project(name=name, labels=["a", "b"])

    async def CreateProject(
        self, request: trainer_service_pb2.CreateProjectRequest, context: Any
    ) -> trainer_service_pb2.CreateProjectResponse:
        self._record("CreateProject", context)
        if request.display_name == "flaky":
            raise errors.Unavailable("the trainer is restarting")
        project = trainer_service_pb2.Project(
            name="projects/0123456789ab", display_name=request.display_name, labels=request.labels
        )
        return trainer_service_pb2.CreateProjectResponse(project=project)

    async def GetProject(
        self, request: trainer_service_pb2.GetProjectRequest, context: Any
    ) -> trainer_service_pb2.GetProjectResponse:
        self._record("GetProject", context)
        return trainer_service_pb2.GetProjectResponse(project=self._project(request.name))

    async def ListProjects(
        self, request: trainer_service_pb2.ListProjectsRequest, context: Any
    ) -> trainer_service_pb2.ListProjectsResponse:
        self._record("ListProjects", context)
        return trainer_service_pb2.ListProjectsResponse(projects=[self._project("projects/p")])

    async def DeleteProject(
        self, request: trainer_service_pb2.DeleteProjectRequest, context: Any
    ) -> trainer_service_pb2.DeleteProjectResponse:
        self._record("DeleteProject", context)
        self._project(request.name)
        return trainer_service_pb2.DeleteProjectResponse()

    async def GetTrainingJob(
        self, request: trainer_service_pb2.GetTrainingJobRequest, context: Any
    ) -> trainer_service_pb2.GetTrainingJobResponse:
        self._record("GetTrainingJob", context)
        return trainer_service_pb2.GetTrainingJobResponse(job=_job_event(1).job)

    async def CancelTrainingJob(
        self, request: trainer_service_pb2.CancelTrainingJobRequest, context: Any
    ) -> trainer_service_pb2.CancelTrainingJobResponse:
        self._record("CancelTrainingJob", context)
        return trainer_service_pb2.CancelTrainingJobResponse(job=_job_event(1).job)

    async def Publish(
        self, request: trainer_service_pb2.PublishRequest, context: Any
    ) -> trainer_service_pb2.PublishResponse:
        self._record("Publish", context)
        self._project(request.project)
        if request.disease not in self.published:
            self.published.append(request.disease)
        return trainer_service_pb2.PublishResponse(
            model=model_info_pb2.ModelInfo(disease=request.disease, model_name="trainer-x")
        )

    async def ListPublishedModels(
        self, request: trainer_service_pb2.ListPublishedModelsRequest, context: Any
    ) -> trainer_service_pb2.ListPublishedModelsResponse:
        # Counted only: the gateway's polls must not mix with the calls a test makes.
        self.calls["ListPublishedModels"] = self.calls.get("ListPublishedModels", 0) + 1
        # Position tokens are enough for a double; the real trainer's name the last disease.
        self.page_tokens.append(request.page_token)
        start = int(request.page_token or 0)
        size = min(request.page_size or 100, self.max_page_size)
        diseases = sorted(self.published)
        end = start + size
        return trainer_service_pb2.ListPublishedModelsResponse(
            published_models=[
                trainer_service_pb2.PublishedModel(disease=disease)
                for disease in diseases[start:end]
            ],
            next_page_token=str(end) if end < len(diseases) else "",
        )

    async def UploadExamples(
        self,
        request_iterator: AsyncIterator[trainer_service_pb2.UploadExamplesRequest],
        context: Any,
    ) -> trainer_service_pb2.UploadExamplesResponse:
        self._record("UploadExamples", context)
        received: list[bytes] = []
        try:
            async for message in request_iterator:
                received.append(message.image)
                self.uploaded.append(message.image)
                self.first_upload.set()
            await asyncio.sleep(0.01)  # the storing, during which a cancellation can land
        except asyncio.CancelledError:
            self._cancelled("UploadExamples")
            raise
        self.stored += len(received)  # all or nothing, like the real trainer
        return trainer_service_pb2.UploadExamplesResponse(accepted_count=len(received))

    async def Train(
        self, request: trainer_service_pb2.TrainRequest, context: Any
    ) -> AsyncIterator[trainer_service_pb2.TrainResponse]:
        self._record("Train", context)
        self._project(request.project)
        try:
            for epoch in range(1, request.epochs + 1):
                yield _job_event(epoch)
                if request.project == "projects/failing":
                    raise errors.MedimgError("the training diverged", reason="TRAINING_FAILED")
            if request.project == "projects/endless":
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self._cancelled("Train")
            raise

    async def WatchTrainingJob(
        self, request: trainer_service_pb2.WatchTrainingJobRequest, context: Any
    ) -> AsyncIterator[trainer_service_pb2.WatchTrainingJobResponse]:
        self._record("WatchTrainingJob", context)
        yield trainer_service_pb2.WatchTrainingJobResponse(job=_job_event(1).job)

    async def StreamPredictions(
        self,
        request_iterator: AsyncIterator[trainer_service_pb2.StreamPredictionsRequest],
        context: Any,
    ) -> AsyncIterator[trainer_service_pb2.StreamPredictionsResponse]:
        self._record("StreamPredictions", context)
        try:
            async for frame in request_iterator:
                if frame.image == b"bad":
                    raise errors.InvalidImage("frame 2 is not an image", reason="IMAGE_INVALID")
                yield trainer_service_pb2.StreamPredictionsResponse(
                    frame_id=frame.frame_id, top_label="a"
                )
            # grpc ends the request stream alike on half-close and on cancel; the
            # cancellation lands on the handler's task a moment later.
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self._cancelled("StreamPredictions")
            raise


def closed_port() -> int:
    """Returns a loopback port that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def upstream(
    servicer: FakeDiagnosis | FakeSeries | FakeTrainer, env: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """Runs a servicekit server with servicer (env: UP_* settings); yields its address."""
    if isinstance(servicer, FakeTrainer):
        trainer = servicer
        binding = ServiceBinding(
            "medimg.v1.TrainerService",
            lambda s: trainer_service_pb2_grpc.add_TrainerServiceServicer_to_server(trainer, s),
        )
    elif isinstance(servicer, FakeDiagnosis):
        binding = ServiceBinding(
            "medimg.v1.DiagnosisService",
            lambda s: diagnosis_service_pb2_grpc.add_DiagnosisServiceServicer_to_server(
                servicer, s
            ),
        )
    else:
        binding = ServiceBinding(
            "medimg.v1.SeriesAnalysisService",
            lambda s: series_analysis_service_pb2_grpc.add_SeriesAnalysisServiceServicer_to_server(
                servicer, s
            ),
        )
    server = Server(ServerSettings.from_env("UP_", default_port=0, env=env or {}), [binding])
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def gateway_settings(state_dir: Path, **env: str) -> GatewaySettings:
    """Returns gateway settings on a free port; env keys omit the GATEWAY_ prefix."""
    values: Mapping[str, str] = {
        "GATEWAY_PORT": "0",
        "GATEWAY_STATE_DIR": str(state_dir),
        "GATEWAY_RETRY_INITIAL_BACKOFF_MS": "10",
        "GATEWAY_RETRY_MAX_BACKOFF_MS": "50",
        **{f"GATEWAY_{key}": value for key, value in env.items()},
    }
    return GatewaySettings.from_env(values)


@asynccontextmanager
async def gateway(settings: GatewaySettings) -> AsyncIterator[grpc.aio.Channel]:
    """Runs the gateway in-process; yields a channel to it."""
    router = Router(settings)
    server = Server(settings.server, build_bindings(router), lifecycle=router)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(0)
