"""Calls to the trainer's TrainerService through the gateway: projects, training, live tests."""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator
from typing import Any, Final

import grpc
from medimg.v1 import trainer_service_pb2, trainer_service_pb2_grpc

from servicekit.request_context import REQUEST_ID_KEY
from web.gateway_client.channel import Connection, request_id_for
from web.gateway_client.convert import description, job_state, probability, project
from web.gateway_client.errors import TRAINER_OUTCOMES, call_failure
from web.gateway_client.results import (
    ClassScore,
    LivePrediction,
    ModelDescription,
    TrainerProject,
    TrainingJobState,
    TrainSettings,
    UploadReceipt,
)


class TrainerCalls(Connection):
    """The teachable machine's calls; what goes wrong maps through TRAINER_OUTCOMES."""

    _trainer: trainer_service_pb2_grpc.TrainerServiceStub

    def _trainer_call(
        self, name: str, request: object, timeout_s: float, request_id: str | None
    ) -> Any:
        rid = request_id_for(request_id)
        method = getattr(self._trainer, name)
        try:
            return method(request, timeout=timeout_s, metadata=((REQUEST_ID_KEY, rid),))
        except grpc.RpcError as exc:
            raise call_failure(exc, rid, name, TRAINER_OUTCOMES) from None

    def create_project(
        self, *, display_name: str, labels: Iterable[str], request_id: str | None = None
    ) -> TrainerProject:
        """Creates a project on the trainer; raises GatewayError (bad labels: 400)."""
        pb = trainer_service_pb2
        request = pb.CreateProjectRequest(display_name=display_name, labels=list(labels))
        timeout = self.config.trainer_timeout_s
        return project(self._trainer_call("CreateProject", request, timeout, request_id).project)

    def get_project(self, *, name: str, request_id: str | None = None) -> TrainerProject:
        """Returns a project with its example counts."""
        request = trainer_service_pb2.GetProjectRequest(name=name)
        timeout = self.config.info_timeout_s
        return project(self._trainer_call("GetProject", request, timeout, request_id).project)

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
        counts = (entry.example_count for entry in response.label_counts)
        return UploadReceipt(
            response.accepted_count, tuple(counts) or tuple(response.example_counts)
        )

    def train(
        self, *, project: str, settings: TrainSettings, request_id: str | None = None
    ) -> TrainingEvents:
        """Starts a training job; its events arrive by iterating the result."""
        rid = request_id_for(request_id)
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
        rid = request_id_for(request_id)
        request = trainer_service_pb2.WatchTrainingJobRequest(name=name)
        call = self._trainer.WatchTrainingJob(
            request, timeout=self.config.train_timeout_s, metadata=((REQUEST_ID_KEY, rid),)
        )
        return TrainingEvents(call, "WatchTrainingJob", rid)

    def get_training_job(self, *, name: str, request_id: str | None = None) -> TrainingJobState:
        """Returns a training job's current state."""
        request = trainer_service_pb2.GetTrainingJobRequest(name=name)
        timeout = self.config.info_timeout_s
        return job_state(self._trainer_call("GetTrainingJob", request, timeout, request_id).job)

    def cancel_training_job(self, *, name: str, request_id: str | None = None) -> TrainingJobState:
        """Cancels a queued or running job; returns it (CANCELLED unless it had ended)."""
        request = trainer_service_pb2.CancelTrainingJobRequest(name=name)
        timeout = self.config.trainer_timeout_s
        response = self._trainer_call("CancelTrainingJob", request, timeout, request_id)
        return job_state(response.job)

    def stream_predictions(
        self, *, project: str, request_id: str | None = None
    ) -> PredictionStream:
        """Opens a live prediction stream on a project's latest trained model."""
        rid = request_id_for(request_id)
        return PredictionStream(self._trainer, project, self.config.train_timeout_s, rid)

    def publish(
        self, *, project: str, disease: str, request_id: str | None = None
    ) -> ModelDescription:
        """Publishes a project's latest model under a disease name; returns the gateway's view."""
        request = trainer_service_pb2.PublishRequest(project=project, disease=disease)
        timeout = self.config.trainer_timeout_s
        return description(self._trainer_call("Publish", request, timeout, request_id).model)


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
                yield job_state(response.job)
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise call_failure(exc, self.request_id, self._method, TRAINER_OUTCOMES) from None

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
                        ClassScore(s.label, probability(s.score)) for s in response.scores
                    ),
                    dropped_frame_count=response.dropped_frame_count,
                )
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return
            method = "StreamPredictions"
            raise call_failure(exc, self.request_id, method, TRAINER_OUTCOMES) from None

    def close(self) -> None:
        """Ends the call: no more frames, and the server's remaining answers are dropped."""
        self._frames.put(_CLOSE)
        self._call.cancel()
