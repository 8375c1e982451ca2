"""medimg.v1.TrainerService and DiagnosisService (published models): thin gRPC handlers.

Each handler hands its request to a plain function of rpc_projects, rpc_training or
rpc_models, which turns it into calls on the Trainer and builds the response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
)

from servicekit.server import ServiceBinding
from trainer_service import rpc_models, rpc_projects, rpc_training
from trainer_service.service import Trainer

pb = trainer_service_pb2
TRAINER_SERVICE = "medimg.v1.TrainerService"
DIAGNOSIS_SERVICE = "medimg.v1.DiagnosisService"
Context = Any  # grpc.aio.ServicerContext; the stubs type handlers as synchronous


class TrainerServicerBase(trainer_service_pb2_grpc.TrainerServiceServicer):
    """What each part of TrainerService holds: the trainer its handlers call."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer


class ProjectsServicer(TrainerServicerBase):
    """TrainerService's projects and their labelled examples."""

    async def CreateProject(
        self, request: pb.CreateProjectRequest, context: Context
    ) -> pb.CreateProjectResponse:
        """Creates a project with its labels."""
        return rpc_projects.create_project(self._trainer, request)

    async def GetProject(self, request: pb.GetProjectRequest, context: Context) -> (
        pb.GetProjectResponse
    ):  # fmt: skip
        """Returns one project with its example counts."""
        return rpc_projects.get_project(self._trainer, request)

    async def ListProjects(
        self, request: pb.ListProjectsRequest, context: Context
    ) -> pb.ListProjectsResponse:
        """Returns one page of the projects, newest first."""
        return await rpc_projects.list_projects_page(self._trainer, request)

    async def DeleteProject(
        self, request: pb.DeleteProjectRequest, context: Context
    ) -> pb.DeleteProjectResponse:
        """Deletes a project with its examples and models."""
        return await rpc_projects.delete_project(self._trainer, request)

    async def UploadExamples(
        self, request_iterator: AsyncIterator[pb.UploadExamplesRequest], context: Context
    ) -> pb.UploadExamplesResponse:
        """Stores every example streamed in, or none when one of them is bad."""
        return await rpc_projects.upload_examples(self._trainer, request_iterator)


class TrainingServicer(TrainerServicerBase):
    """TrainerService's training jobs: started, read, watched and cancelled."""

    async def Train(
        self, request: pb.TrainRequest, context: Context
    ) -> AsyncIterator[pb.TrainResponse]:
        """Starts a job and streams its events; the job outlives this call."""
        async for response in rpc_training.train(self._trainer, request):
            yield response

    async def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: Context
    ) -> pb.GetTrainingJobResponse:
        """Returns a job's state and latest metrics."""
        return rpc_training.get_training_job(self._trainer, request)

    async def WatchTrainingJob(
        self, request: pb.WatchTrainingJobRequest, context: Context
    ) -> AsyncIterator[pb.WatchTrainingJobResponse]:
        """Streams a job's events from now until it ends."""
        async for response in rpc_training.watch_training_job(self._trainer, request):
            yield response

    async def CancelTrainingJob(
        self, request: pb.CancelTrainingJobRequest, context: Context
    ) -> pb.CancelTrainingJobResponse:
        """Cancels a queued or running job and returns it once it has stopped."""
        return await rpc_training.cancel_training_job(self._trainer, request)


class ModelsServicer(TrainerServicerBase):
    """TrainerService's trained models: live prediction and publishing."""

    async def StreamPredictions(
        self, request_iterator: AsyncIterator[pb.StreamPredictionsRequest], context: Context
    ) -> AsyncIterator[pb.StreamPredictionsResponse]:
        """Predicts the newest frame each time the model is free; older waiting ones drop."""
        async for response in rpc_models.stream_predictions(self._trainer, request_iterator):
            yield response

    async def Publish(self, request: pb.PublishRequest, context: Context) -> pb.PublishResponse:
        """Publishes the project's latest model as a disease, served here from then on."""
        return await rpc_models.publish(self._trainer, request)

    async def ListPublishedModels(
        self, request: pb.ListPublishedModelsRequest, context: Context
    ) -> pb.ListPublishedModelsResponse:
        """Returns one page of the published models, sorted by disease."""
        return rpc_models.list_published_models(self._trainer.published.all(), request)


class TrainerServicer(ProjectsServicer, TrainingServicer, ModelsServicer):
    """medimg.v1.TrainerService: its three parts in the one object grpc registers."""


class PublishedDiagnosisServicer(diagnosis_service_pb2_grpc.DiagnosisServiceServicer):
    """Diagnoses images with the models the trainer has published, picked by disease."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    async def Diagnose(
        self, request: diagnosis_service_pb2.DiagnoseRequest, context: Context
    ) -> diagnosis_service_pb2.DiagnoseResponse:
        """Returns the class probabilities of one image, highest first."""
        return await rpc_models.diagnose(self._trainer, request)

    async def GetModelInfo(
        self, request: diagnosis_service_pb2.GetModelInfoRequest, context: Context
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        """Returns the description of a published model."""
        return rpc_models.get_model_info(self._trainer, request)


def bindings(trainer: Trainer) -> list[ServiceBinding]:
    """Returns the bindings that host both services on a server."""
    trainer_servicer = TrainerServicer(trainer)
    diagnosis_servicer = PublishedDiagnosisServicer(trainer)

    def add_trainer(server: grpc.aio.Server) -> None:
        trainer_service_pb2_grpc.add_TrainerServiceServicer_to_server(trainer_servicer, server)

    def add_diagnosis(server: grpc.aio.Server) -> None:
        diagnosis_service_pb2_grpc.add_DiagnosisServiceServicer_to_server(
            diagnosis_servicer, server
        )

    return [
        ServiceBinding(TRAINER_SERVICE, add_trainer),
        ServiceBinding(DIAGNOSIS_SERVICE, add_diagnosis),
    ]
