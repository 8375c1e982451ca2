"""The web tier's one client of the gateway: every gRPC call, its deadline and its error mapping."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Final, TypeVar

import grpc
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_info_pb2,
    model_registry_pb2,
    model_registry_pb2_grpc,
    series_analysis_service_pb2,
    series_analysis_service_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
)

from servicekit.errors import is_too_large
from servicekit.request_context import REQUEST_ID_KEY, accept_request_id, current_request_id
from servicekit.status import error_reason

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The gateway's Service is headless in Kubernetes: its name resolves to every gateway pod,
# and round_robin spreads calls over all of them (pick_first would pin one). A short
# reconnect backoff makes a restarted gateway usable again within about a second, and
# bounds each connection attempt, so a call to a gateway that is down fails fast.
CHANNEL_OPTIONS: Final[tuple[tuple[str, int | str], ...]] = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # The gateway retries UNAVAILABLE itself; grpc's retry layer would also keep copies of
    # every streamed series chunk until it commits to an attempt.
    ("grpc.enable_retries", 0),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)
# Series zips travel in chunks of this size, so no single message is large.
SERIES_CHUNK_BYTES: Final = 256 * 1024


@dataclass(frozen=True)
class Outcome:
    """What a gRPC status means to the web tier: the HTTP status and what to tell a person."""

    http_status: int
    message: str
    retry_after_s: int | None = None
    # True where the gateway's own message tells the person what to fix (bad input).
    shows_details: bool = False
    # True where sending the same request again later may succeed.
    retryable: bool = False


_INTERNAL = Outcome(
    500, "Something went wrong on our side. Please try again later.", retryable=True
)
_MISCONFIGURED = Outcome(
    502, "The diagnosis service answered unexpectedly. Please try again later.", retryable=True
)

_S = grpc.StatusCode
_BUSY = "The diagnosis service is busy. Please try again in a few seconds."
_DOWN = "The diagnosis service is unavailable right now. Please try again in a minute."
_SLOW = "The diagnosis took too long. Please try again."

# The one table of gRPC status to HTTP status and page message for the whole web tier.
STATUS_OUTCOMES: Final[dict[grpc.StatusCode, Outcome]] = {
    _S.INVALID_ARGUMENT: Outcome(400, "The upload could not be used.", shows_details=True),
    _S.NOT_FOUND: Outcome(404, "This kind of diagnosis is not offered right now."),
    _S.RESOURCE_EXHAUSTED: Outcome(429, _BUSY, retry_after_s=5, retryable=True),
    _S.UNAVAILABLE: Outcome(503, _DOWN, retry_after_s=30, retryable=True),
    _S.DEADLINE_EXCEEDED: Outcome(504, _SLOW, retryable=True),
    **dict.fromkeys((_S.INTERNAL, _S.UNKNOWN, _S.DATA_LOSS), _INTERNAL),
    # The rest mean the web tier and the gateway disagree (credentials, contract, version):
    # never the person's fault, and not something the web tier itself did wrong.
    **dict.fromkeys(
        (
            _S.CANCELLED,
            _S.ALREADY_EXISTS,
            _S.PERMISSION_DENIED,
            _S.FAILED_PRECONDITION,
            _S.ABORTED,
            _S.OUT_OF_RANGE,
            _S.UNIMPLEMENTED,
            _S.UNAUTHENTICATED,
        ),
        _MISCONFIGURED,
    ),
}


_TRAINER_DOWN = "The trainer is unavailable right now. Please try again in a minute."
_TRAINER_CONFLICT = Outcome(409, "This cannot be done right now.", shows_details=True)

# The trainer's calls: what goes wrong there is mostly the person's to fix (too few
# examples, a disease name in use), so its own message is shown for those statuses.
TRAINER_OUTCOMES: Final[dict[grpc.StatusCode, Outcome]] = {
    **STATUS_OUTCOMES,
    _S.INVALID_ARGUMENT: Outcome(400, "The request could not be used.", shows_details=True),
    _S.NOT_FOUND: Outcome(404, "The trainer does not know this project.", shows_details=True),
    _S.FAILED_PRECONDITION: _TRAINER_CONFLICT,
    _S.ALREADY_EXISTS: _TRAINER_CONFLICT,
    _S.RESOURCE_EXHAUSTED: Outcome(
        429,
        "The trainer is busy. Please try again in a few seconds.",
        retry_after_s=5,
        shows_details=True,
        retryable=True,
    ),
    _S.UNAVAILABLE: Outcome(503, _TRAINER_DOWN, retry_after_s=30, retryable=True),
    _S.DEADLINE_EXCEEDED: Outcome(
        504, "The trainer took too long. Please try again.", retryable=True
    ),
}


def outcome_for(
    code: grpc.StatusCode, outcomes: Mapping[grpc.StatusCode, Outcome] = STATUS_OUTCOMES
) -> Outcome:
    """Returns the web tier's outcome of a gRPC status code (diagnosis calls by default)."""
    return outcomes.get(code, _INTERNAL)


def outcome_for_name(name: str) -> Outcome:
    """Returns the outcome of a status code by its name ("UNAVAILABLE"), as records keep it."""
    code = grpc.StatusCode.__members__.get(name)
    return _INTERNAL if code is None else outcome_for(code)


class GatewayError(Exception):
    """A call to the gateway ended with a status other than OK.

    `code` is the gRPC status name ("UNAVAILABLE"), `reason` the ErrorInfo reason when the
    services sent one ("IMAGE_TRUNCATED"), `details` the gateway's own message; `message`
    is what a person may be shown, `http_status` and `retry_after_s` what HTTP answers.
    """

    def __init__(
        self,
        status: grpc.StatusCode,
        details: str,
        *,
        reason: str,
        request_id: str,
        outcomes: Mapping[grpc.StatusCode, Outcome] = STATUS_OUTCOMES,
    ):
        super().__init__(f"{status.name}: {details}")
        self.status = status
        self.code = status.name
        self.details = details
        self.reason = reason
        self.request_id = request_id
        self.outcome = outcome_for(status, outcomes)
        # One status per kind of refusal: "too large" is 413 wherever it was found.
        too_large = status == grpc.StatusCode.INVALID_ARGUMENT and is_too_large(reason)
        self.http_status = 413 if too_large else self.outcome.http_status
        self.retry_after_s = self.outcome.retry_after_s
        self.retryable = self.outcome.retryable

    @property
    def message(self) -> str:
        """Returns the message a person is shown: the gateway's for bad input, else friendly."""
        if self.outcome.shows_details and self.details:
            return self.details[:1].upper() + self.details[1:].rstrip(".") + "."
        return self.outcome.message


@dataclass(frozen=True)
class ClassScore:
    """The probability of one class."""

    label: str
    score: float


@dataclass(frozen=True)
class Diagnosis:
    """The gateway's diagnosis of one image, with the request id and the call's duration."""

    disease: str
    top_label: str
    top_score: float
    scores: tuple[ClassScore, ...]
    model_name: str
    model_version: str
    demo_model: bool
    request_id: str
    elapsed_ms: float


@dataclass(frozen=True)
class ModelDescription:
    """The model that serves a disease, as its service describes it."""

    disease: str
    model_name: str
    model_version: str
    kind: str  # "image", "series" or "unspecified"
    labels: tuple[str, ...]
    input_height_px: int
    input_width_px: int
    input_channels: int
    backend: str
    demo_model: bool
    description: str


@dataclass(frozen=True)
class RegisteredModel:
    """One disease the gateway routes to; `model` is None while its service is unreachable."""

    disease: str
    kind: str
    model: ModelDescription | None
    available: bool
    unavailable_reason: str
    replica_count: int


@dataclass(frozen=True)
class SliceScore:
    """One model's probability that a slice shows a finding."""

    model_name: str
    probability: float


@dataclass(frozen=True)
class SliceImage:
    """The DICOM image that shows one slice in one phase, to find it in a PACS or viewer."""

    phase: str  # "pre", "1st_pass", "2nd_pass" or "3rd_pass"
    sop_instance_uid: str
    instance_number: int | None
    position_mm: float | None


@dataclass(frozen=True)
class SliceFinding:
    """The result for one slice of a series, with its image in each phase."""

    slice_index: int
    positive: bool
    scores: tuple[SliceScore, ...]
    images: tuple[SliceImage, ...] = ()


@dataclass(frozen=True)
class SelectedPhase:
    """One acquisition phase the models read: a series, or a temporal position of one."""

    phase: str
    series_instance_uid: str
    series_description: str
    series_number: int | None
    temporal_position: int | None
    image_count: int


@dataclass(frozen=True)
class UnusedSeries:
    """A series of the study that the analysis does not read, and why."""

    series_instance_uid: str
    series_description: str
    series_number: int | None
    modality: str
    image_count: int
    reason: str


@dataclass(frozen=True)
class SkippedFile:
    """A file of the upload that is not part of the study, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class StudySummary:
    """What an upload holds and which of its series the models read (or would read)."""

    study_instance_uid: str = ""
    phases: tuple[SelectedPhase, ...] = ()
    unused_series: tuple[UnusedSeries, ...] = ()
    skipped_files: tuple[SkippedFile, ...] = ()
    slice_count: int = 0
    ordered_by: str = ""  # "position" or "instance_number"
    selected_by: str = ""  # "folders", "series" or "multiphase"


@dataclass(frozen=True)
class SeriesInspection:
    """What InspectSeries found in an upload, without the models; the request id and time."""

    study: StudySummary
    previews: tuple[bytes, ...]  # PNGs of the pre-contrast slices, when asked
    request_id: str
    elapsed_ms: float


@dataclass(frozen=True)
class SeriesAnalysis:
    """The analysis of one series, with the service's stage timings and the request id."""

    disease: str
    positive_slice_indices: tuple[int, ...]
    slices: tuple[SliceFinding, ...]
    slice_count: int
    model_name: str
    model_version: str
    demo_model: bool
    upload_ms: float
    prepare_ms: float
    model_ms: float
    request_id: str
    elapsed_ms: float
    study: StudySummary = StudySummary()
    previews: tuple[bytes, ...] = ()  # PNGs of the pre-contrast slices, when asked
    # The result as DICOM Part 10 files of the analysed study, when asked (dicom_reports):
    # a TID 1500 Comprehensive 3D SR, and a Key Object Selection document naming the
    # flagged slices' images (b"" when no slice is flagged). Both carry the patient's
    # identity as the study does: web.series.deidentify cleans them before they are kept.
    measurement_report: bytes = b""
    key_images: bytes = b""


@dataclass(frozen=True)
class TrainerProject:
    """A teachable-machine project as the trainer keeps it."""

    name: str  # "projects/{project_id}"
    display_name: str
    labels: tuple[str, ...]
    example_counts: tuple[int, ...]
    latest_training_job: str
    published_disease: str


@dataclass(frozen=True)
class EpochProgress:
    """The metrics after one finished epoch."""

    epoch: int
    total_epochs: int
    loss: float
    accuracy: float
    validation_accuracy: float
    elapsed_seconds: float
    eta_seconds: float


@dataclass(frozen=True)
class TrainingJobState:
    """One state of a training job: where it stands and its latest metrics."""

    name: str  # "projects/{project_id}/trainingJobs/{job_id}"
    state: str  # "queued", "running", "succeeded", "failed", "cancelled" or "unspecified"
    metrics: EpochProgress | None
    error_message: str

    @property
    def active(self) -> bool:
        """Tells whether the job may still change (queued or running)."""
        return self.state in ("queued", "running")


@dataclass(frozen=True)
class TrainSettings:
    """How to train: epochs, batch size, learning rate, validation split and seed."""

    epochs: int
    batch_size: int
    learning_rate: float
    validation_split: float
    seed: int


@dataclass(frozen=True)
class UploadReceipt:
    """What an upload of examples stored, and the counts per label after it."""

    accepted_count: int
    example_counts: tuple[int, ...]


@dataclass(frozen=True)
class LivePrediction:
    """The trainer's prediction for one streamed frame."""

    frame_id: int
    top_label: str
    scores: tuple[ClassScore, ...]
    dropped_frame_count: int


_JOB_STATES: Final = {
    trainer_service_pb2.TRAINING_JOB_STATE_QUEUED: "queued",
    trainer_service_pb2.TRAINING_JOB_STATE_RUNNING: "running",
    trainer_service_pb2.TRAINING_JOB_STATE_SUCCEEDED: "succeeded",
    trainer_service_pb2.TRAINING_JOB_STATE_FAILED: "failed",
    trainer_service_pb2.TRAINING_JOB_STATE_CANCELLED: "cancelled",
}


class TrainingEvents:
    """A training job's events as they arrive (Train or WatchTrainingJob); cancellable.

    Iterating blocks the calling thread until the next event; a failed call raises
    GatewayError. `cancel()` from any thread ends the call (the job itself keeps running:
    only CancelTrainingJob stops it).
    """

    def __init__(self, call: Any, method: str, request_id: str) -> None:
        self._call = call
        self._method = method
        self.request_id = request_id

    def __iter__(self) -> Iterator[TrainingJobState]:
        try:
            for response in self._call:
                yield _job_state(response.job)
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise _failure(exc, self.request_id, self._method, TRAINER_OUTCOMES) from None

    def cancel(self) -> None:
        """Ends the call; a thread iterating it stops."""
        self._call.cancel()


_CLOSE: Final = object()


class PredictionStream:
    """One live StreamPredictions call: frames sent from one thread, predictions read in another.

    The trainer keeps at most one frame waiting; the caller should still send a frame only
    once the previous prediction came back, so that nothing queues in between.
    """

    def __init__(self, stub: Any, project: str, timeout_s: float, request_id: str) -> None:
        self._frames: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._project = project
        self.request_id = request_id
        self._call = stub.StreamPredictions(
            self._requests(), timeout=timeout_s, metadata=((REQUEST_ID_KEY, request_id),)
        )

    def _requests(self) -> Iterator[trainer_service_pb2.StreamPredictionsRequest]:
        first = True
        while isinstance(item := self._frames.get(), tuple):
            frame_id: int = item[0]
            image: bytes = item[1]
            yield trainer_service_pb2.StreamPredictionsRequest(
                project=self._project if first else "", image=image, frame_id=frame_id
            )
            first = False

    def send(self, *, frame_id: int, image: bytes) -> None:
        """Queues one encoded frame for the call (never blocks)."""
        self._frames.put((frame_id, image))

    def __iter__(self) -> Iterator[LivePrediction]:
        try:
            for response in self._call:
                yield LivePrediction(
                    frame_id=response.frame_id,
                    top_label=response.top_label,
                    scores=tuple(
                        ClassScore(s.label, _probability(s.score)) for s in response.scores
                    ),
                    dropped_frame_count=response.dropped_frame_count,
                )
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise _failure(exc, self.request_id, "StreamPredictions", TRAINER_OUTCOMES) from None

    def close(self) -> None:
        """Ends the call: no more frames, and the server's remaining answers are dropped."""
        self._frames.put(_CLOSE)
        self._call.cancel()


@dataclass(frozen=True)
class GatewayConfig:
    """Where the gateway is and how long each kind of call may take, in seconds."""

    address: str
    diagnose_timeout_s: float = 30.0
    series_timeout_s: float = 300.0
    info_timeout_s: float = 5.0
    trainer_timeout_s: float = 60.0
    # A training's event stream lasts as long as the training.
    train_timeout_s: float = 3600.0


_KINDS: Final = {
    model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER: "image",
    model_info_pb2.MODEL_KIND_SERIES_ANALYZER: "series",
}


class GatewayClient:
    """Calls the gateway over one channel; safe to share between threads."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._channel = grpc.insecure_channel(config.address, options=CHANNEL_OPTIONS)
        self._diagnosis = diagnosis_service_pb2_grpc.DiagnosisServiceStub(self._channel)
        self._series = series_analysis_service_pb2_grpc.SeriesAnalysisServiceStub(self._channel)
        self._registry = model_registry_pb2_grpc.ModelRegistryStub(self._channel)
        self._trainer = trainer_service_pb2_grpc.TrainerServiceStub(self._channel)

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def wait_until_ready(self, *, timeout_s: float) -> bool:
        """Waits until the channel is connected to a gateway; tells whether it got there.

        Calls never wait for a connection (a gateway that is down fails them at once), so
        this is for callers that know the gateway is coming up, such as a start-up check.
        """
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            return False
        return True

    def _call(
        self, name: str, method: Callable[..., T], request: object, timeout_s: float, rid: str
    ) -> T:
        """Makes one call with its deadline and request id; raises GatewayError."""
        try:
            return method(request, timeout=timeout_s, metadata=((REQUEST_ID_KEY, rid),))
        except grpc.RpcError as exc:
            raise _failure(exc, rid, name) from None

    def diagnose(
        self,
        *,
        image: bytes,
        disease: str,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Diagnosis:
        """Returns the diagnosis of one encoded image; raises GatewayError."""
        rid = _request_id(request_id)
        request = diagnosis_service_pb2.DiagnoseRequest(disease=disease, image=image)
        started = time.perf_counter()
        timeout = timeout_s or self.config.diagnose_timeout_s
        response = self._call("Diagnose", self._diagnosis.Diagnose, request, timeout, rid)
        return Diagnosis(
            disease=response.disease or disease,
            top_label=response.top_label,
            top_score=_probability(response.top_score),
            scores=tuple(ClassScore(s.label, _probability(s.score)) for s in response.scores),
            model_name=response.model_name,
            model_version=response.model_version,
            demo_model=response.demo_model,
            request_id=rid,
            elapsed_ms=_elapsed_ms(started),
        )

    def model_info(self, *, disease: str, request_id: str | None = None) -> ModelDescription:
        """Returns the description of the model that classifies images of a disease."""
        request = diagnosis_service_pb2.GetModelInfoRequest(disease=disease)
        method = self._diagnosis.GetModelInfo
        timeout, rid = self.config.info_timeout_s, _request_id(request_id)
        return _description(self._call("GetModelInfo", method, request, timeout, rid).model)

    def series_model_info(self, *, disease: str, request_id: str | None = None) -> ModelDescription:
        """Returns the description of the models that analyse a disease's series."""
        request = series_analysis_service_pb2.GetSeriesModelInfoRequest(disease=disease)
        method = self._series.GetSeriesModelInfo
        timeout, rid = self.config.info_timeout_s, _request_id(request_id)
        return _description(self._call("GetSeriesModelInfo", method, request, timeout, rid).model)

    def list_models(self, *, request_id: str | None = None) -> list[RegisteredModel]:
        """Returns every disease the gateway routes to, sorted by disease."""
        request, method = model_registry_pb2.ListModelsRequest(), self._registry.ListModels
        timeout, rid = self.config.info_timeout_s, _request_id(request_id)
        response = self._call("ListModels", method, request, timeout, rid)
        return [
            RegisteredModel(
                disease=entry.disease,
                kind=_KINDS.get(entry.kind, "unspecified"),
                model=_description(entry.model) if entry.HasField("model") else None,
                available=entry.available,
                unavailable_reason=entry.unavailable_reason,
                replica_count=entry.replica_count,
            )
            for entry in response.models
        ]

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
        rid = _request_id(request_id)
        started = time.perf_counter()
        messages = _upload_messages(
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
                        SliceScore(s.model_name, _probability(s.probability))
                        for s in finding.model_scores
                    ),
                    images=tuple(_slice_image(image) for image in finding.images),
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
            elapsed_ms=_elapsed_ms(started),
            study=_study(response.study),
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
        rid = _request_id(request_id)
        started = time.perf_counter()
        messages = _upload_messages(chunks, disease, total_size_bytes, preview_size_px)
        timeout = timeout_s or self.config.series_timeout_s
        response = self._call("InspectSeries", self._series.InspectSeries, messages, timeout, rid)
        return SeriesInspection(
            study=_study(response.study),
            previews=tuple(response.preview_png),
            request_id=rid,
            elapsed_ms=_elapsed_ms(started),
        )

    # --- the trainer (TrainerService through the gateway) -------------------------------------

    def _trainer_call(
        self, name: str, request: object, timeout_s: float, request_id: str | None
    ) -> Any:
        rid = _request_id(request_id)
        method = getattr(self._trainer, name)
        try:
            return method(request, timeout=timeout_s, metadata=((REQUEST_ID_KEY, rid),))
        except grpc.RpcError as exc:
            raise _failure(exc, rid, name, TRAINER_OUTCOMES) from None

    def create_project(
        self, *, display_name: str, labels: Iterable[str], request_id: str | None = None
    ) -> TrainerProject:
        """Creates a project on the trainer; raises GatewayError (bad labels: 400)."""
        pb = trainer_service_pb2
        request = pb.CreateProjectRequest(display_name=display_name, labels=list(labels))
        timeout = self.config.trainer_timeout_s
        return _project(self._trainer_call("CreateProject", request, timeout, request_id).project)

    def get_project(self, *, name: str, request_id: str | None = None) -> TrainerProject:
        """Returns a project with its example counts."""
        request = trainer_service_pb2.GetProjectRequest(name=name)
        timeout = self.config.info_timeout_s
        return _project(self._trainer_call("GetProject", request, timeout, request_id).project)

    def delete_project(self, *, name: str, request_id: str | None = None) -> None:
        """Deletes a project with its examples and models."""
        request = trainer_service_pb2.DeleteProjectRequest(name=name)
        self._trainer_call("DeleteProject", request, self.config.trainer_timeout_s, request_id)

    def upload_examples(
        self,
        *,
        project: str,
        examples: Iterable[tuple[str, bytes]],
        request_id: str | None = None,
    ) -> UploadReceipt:
        """Streams (label, encoded image) pairs to a project; all are stored or none."""
        pb = trainer_service_pb2
        messages = (
            pb.UploadExamplesRequest(project=project, label=label, image=image)
            for label, image in examples
        )
        timeout = self.config.trainer_timeout_s
        response = self._trainer_call("UploadExamples", messages, timeout, request_id)
        return UploadReceipt(response.accepted_count, tuple(response.example_counts))

    def train(
        self, *, project: str, settings: TrainSettings, request_id: str | None = None
    ) -> TrainingEvents:
        """Starts a training job; its events arrive by iterating the result."""
        rid = _request_id(request_id)
        request = trainer_service_pb2.TrainRequest(
            project=project,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            validation_split=settings.validation_split,
            seed=settings.seed,
        )
        call = self._trainer.Train(
            request, timeout=self.config.train_timeout_s, metadata=((REQUEST_ID_KEY, rid),)
        )
        return TrainingEvents(call, "Train", rid)

    def watch_training_job(self, *, name: str, request_id: str | None = None) -> TrainingEvents:
        """Follows a training job from its current state until it ends."""
        rid = _request_id(request_id)
        request = trainer_service_pb2.WatchTrainingJobRequest(name=name)
        call = self._trainer.WatchTrainingJob(
            request, timeout=self.config.train_timeout_s, metadata=((REQUEST_ID_KEY, rid),)
        )
        return TrainingEvents(call, "WatchTrainingJob", rid)

    def get_training_job(self, *, name: str, request_id: str | None = None) -> TrainingJobState:
        """Returns a training job's current state."""
        request = trainer_service_pb2.GetTrainingJobRequest(name=name)
        timeout = self.config.info_timeout_s
        return _job_state(self._trainer_call("GetTrainingJob", request, timeout, request_id).job)

    def cancel_training_job(self, *, name: str, request_id: str | None = None) -> TrainingJobState:
        """Cancels a queued or running job; returns it (CANCELLED unless it had ended)."""
        request = trainer_service_pb2.CancelTrainingJobRequest(name=name)
        timeout = self.config.trainer_timeout_s
        response = self._trainer_call("CancelTrainingJob", request, timeout, request_id)
        return _job_state(response.job)

    def stream_predictions(
        self, *, project: str, request_id: str | None = None
    ) -> PredictionStream:
        """Opens a live prediction stream on a project's latest trained model."""
        rid = _request_id(request_id)
        return PredictionStream(self._trainer, project, self.config.train_timeout_s, rid)

    def publish(
        self, *, project: str, disease: str, request_id: str | None = None
    ) -> ModelDescription:
        """Publishes a project's latest model under a disease name; returns the gateway's view."""
        request = trainer_service_pb2.PublishRequest(project=project, disease=disease)
        timeout = self.config.trainer_timeout_s
        return _description(self._trainer_call("Publish", request, timeout, request_id).model)


def file_chunks(stream: IO[bytes], chunk_bytes: int = SERIES_CHUNK_BYTES) -> Iterator[bytes]:
    """Yields a binary file's content in chunks, for `analyze_series` and `inspect_series`."""
    while chunk := stream.read(chunk_bytes):
        yield chunk


def _upload_messages(
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


def _slice_image(image: series_analysis_service_pb2.SliceImage) -> SliceImage:
    return SliceImage(
        phase=image.phase,
        sop_instance_uid=image.sop_instance_uid,
        instance_number=image.instance_number if image.HasField("instance_number") else None,
        position_mm=round(image.position_mm, 3) if image.HasField("position_mm") else None,
    )


def _study(study: series_analysis_service_pb2.StudySummary) -> StudySummary:
    return StudySummary(
        study_instance_uid=study.study_instance_uid,
        phases=tuple(
            SelectedPhase(
                phase=p.phase,
                series_instance_uid=p.series_instance_uid,
                series_description=p.series_description,
                series_number=p.series_number if p.HasField("series_number") else None,
                temporal_position=p.temporal_position if p.HasField("temporal_position") else None,
                image_count=p.image_count,
            )
            for p in study.phases
        ),
        unused_series=tuple(
            UnusedSeries(
                series_instance_uid=u.series_instance_uid,
                series_description=u.series_description,
                series_number=u.series_number if u.HasField("series_number") else None,
                modality=u.modality,
                image_count=u.image_count,
                reason=u.reason,
            )
            for u in study.unused_series
        ),
        skipped_files=tuple(SkippedFile(f.path, f.reason) for f in study.skipped_files),
        slice_count=study.slice_count,
        ordered_by=study.ordered_by,
        selected_by=study.selected_by,
    )


def _description(info: model_info_pb2.ModelInfo) -> ModelDescription:
    return ModelDescription(
        disease=info.disease,
        model_name=info.model_name,
        model_version=info.model_version,
        kind=_KINDS.get(info.kind, "unspecified"),
        labels=tuple(info.labels),
        input_height_px=info.input_height_px,
        input_width_px=info.input_width_px,
        input_channels=info.input_channels,
        backend=info.backend,
        demo_model=info.demo_model,
        description=info.description,
    )


def _project(project: trainer_service_pb2.Project) -> TrainerProject:
    return TrainerProject(
        name=project.name,
        display_name=project.display_name,
        labels=tuple(project.labels),
        example_counts=tuple(project.example_counts),
        latest_training_job=project.latest_training_job,
        published_disease=project.published_disease,
    )


def _job_state(job: trainer_service_pb2.TrainingJob) -> TrainingJobState:
    metrics = None
    if job.HasField("latest_metrics"):
        m = job.latest_metrics
        metrics = EpochProgress(
            epoch=m.epoch,
            total_epochs=m.total_epochs,
            loss=round(float(m.loss), 6),
            accuracy=_probability(m.accuracy),
            validation_accuracy=_probability(m.validation_accuracy),
            elapsed_seconds=round(float(m.elapsed_seconds), 3),
            eta_seconds=round(float(m.eta_seconds), 3),
        )
    return TrainingJobState(
        name=job.name,
        state=_JOB_STATES.get(job.state, "unspecified"),
        metrics=metrics,
        error_message=job.error_message,
    )


def _request_id(given: str | None) -> str:
    """Returns the id this call travels with: the given one, the current one, or a new one."""
    return accept_request_id(given or current_request_id())


def _probability(value: float) -> float:
    """Returns a float32 probability as the nearest short decimal (0.7, not 0.69999998)."""
    return round(float(value), 6)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _failure(
    exc: grpc.RpcError,
    request_id: str,
    method: str,
    outcomes: Mapping[grpc.StatusCode, Outcome] = STATUS_OUTCOMES,
) -> GatewayError:
    """Returns the GatewayError for a failed call and logs it (ids only, never content)."""
    if isinstance(exc, grpc.Call):
        status, details, reason = exc.code(), exc.details() or "", error_reason(exc)
    else:
        status, details, reason = grpc.StatusCode.UNKNOWN, "", ""
    logger.warning(
        "gateway %s failed: %s %s",
        method,
        status.name,
        reason or "-",
        extra={"request_id": request_id, "grpc_code": status.name, "reason": reason},
    )
    return GatewayError(status, details, reason=reason, request_id=request_id, outcomes=outcomes)


# One client (one channel) per process; a forked child or a changed setting makes a new one.
_lock = threading.Lock()
_shared: tuple[int, GatewayClient] | None = None


def config_from_settings() -> GatewayConfig:
    """Returns the gateway's address and deadlines from Django settings."""
    from django.conf import settings

    return GatewayConfig(
        address=settings.GATEWAY_ADDR,
        diagnose_timeout_s=float(getattr(settings, "GATEWAY_TIMEOUT_SECONDS", 30.0)),
        series_timeout_s=float(getattr(settings, "GATEWAY_SERIES_TIMEOUT_SECONDS", 300.0)),
        info_timeout_s=float(getattr(settings, "GATEWAY_INFO_TIMEOUT_SECONDS", 5.0)),
        train_timeout_s=float(getattr(settings, "WEB_TEACH_TRAIN_TIMEOUT_SECONDS", 3600.0)),
    )


def get_gateway() -> GatewayClient:
    """Returns this process's client of the gateway that the settings name."""
    global _shared
    config = config_from_settings()
    with _lock:
        if _shared is not None:
            pid, client = _shared
            if pid == os.getpid() and client.config == config:
                return client
            if pid == os.getpid():
                client.close()
        client = GatewayClient(config)
        _shared = (os.getpid(), client)
        return client
