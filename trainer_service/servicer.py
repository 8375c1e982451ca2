"""medimg.v1.TrainerService and DiagnosisService (published models): proto -> domain -> proto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
)

from servicekit import pagination
from servicekit.errors import InvalidArgument
from servicekit.server import ServiceBinding
from trainer_service import convert, names
from trainer_service.names import TrainParams
from trainer_service.predict import LatestFrameSlot
from trainer_service.publish import PublishedModel
from trainer_service.service import ProjectView, Trainer

pb = trainer_service_pb2
TRAINER_SERVICE = "medimg.v1.TrainerService"
DIAGNOSIS_SERVICE = "medimg.v1.DiagnosisService"
Context = Any  # grpc.aio.ServicerContext; the stubs type handlers as synchronous


class TrainerServicer(trainer_service_pb2_grpc.TrainerServiceServicer):
    """Projects, examples, training jobs, live prediction and publishing."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    async def CreateProject(
        self, request: pb.CreateProjectRequest, context: Context
    ) -> pb.CreateProjectResponse:
        """Creates a project with its labels."""
        view = self._trainer.create_project(request.display_name, list(request.labels))
        return pb.CreateProjectResponse(project=convert.to_project(view))

    async def GetProject(self, request: pb.GetProjectRequest, context: Context) -> (
        pb.GetProjectResponse
    ):  # fmt: skip
        """Returns one project with its example counts."""
        view = self._trainer.get_project(names.parse_project_name(request.name))
        return pb.GetProjectResponse(project=convert.to_project(view))

    async def ListProjects(
        self, request: pb.ListProjectsRequest, context: Context
    ) -> pb.ListProjectsResponse:
        """Returns one page of the projects, newest first."""
        return list_projects(await asyncio.to_thread(self._trainer.list_projects), request)

    async def DeleteProject(
        self, request: pb.DeleteProjectRequest, context: Context
    ) -> pb.DeleteProjectResponse:
        """Deletes a project with its examples and models."""
        project_id = names.parse_project_name(request.name)
        await asyncio.to_thread(self._trainer.delete_project, project_id)
        return pb.DeleteProjectResponse()

    async def UploadExamples(
        self, request_iterator: AsyncIterator[pb.UploadExamplesRequest], context: Context
    ) -> pb.UploadExamplesResponse:
        """Stores every example streamed in, or none when one of them is bad."""
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            raise InvalidArgument("UploadExamples needs at least one example") from None
        project_id = names.parse_project_name(first.project, field="project")

        async def examples() -> AsyncIterator[tuple[str, bytes]]:
            yield first.label, first.image
            position = 1
            async for request in requests:
                if request.project and request.project != first.project:
                    raise InvalidArgument(
                        f"example {position}: every message must name the same project"
                    )
                yield request.label, request.image
                position += 1

        accepted, counts = await self._trainer.upload_examples(project_id, examples())
        labels = self._trainer.get_project(project_id).project.labels
        return pb.UploadExamplesResponse(
            accepted_count=accepted,
            example_counts=counts,
            label_counts=convert.to_label_counts(labels, counts),
        )

    async def Train(
        self, request: pb.TrainRequest, context: Context
    ) -> AsyncIterator[pb.TrainResponse]:
        """Starts a job and streams its events; the job outlives this call."""
        project_id = names.parse_project_name(request.project, field="project")
        params = TrainParams.from_request(
            epochs=request.epochs,
            batch_size=request.batch_size,
            learning_rate=request.learning_rate,
            validation_split=request.validation_split,
            seed=request.seed,
        )
        _, events = self._trainer.start_training(project_id, params)
        async for snapshot in events:
            yield pb.TrainResponse(job=convert.to_job(snapshot))

    async def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: Context
    ) -> pb.GetTrainingJobResponse:
        """Returns a job's state and latest metrics."""
        snapshot = self._trainer.jobs.get(*names.parse_job_name(request.name))
        return pb.GetTrainingJobResponse(job=convert.to_job(snapshot))

    async def WatchTrainingJob(
        self, request: pb.WatchTrainingJobRequest, context: Context
    ) -> AsyncIterator[pb.WatchTrainingJobResponse]:
        """Streams a job's events from now until it ends."""
        events = self._trainer.jobs.watch(*names.parse_job_name(request.name))
        async for snapshot in events:
            yield pb.WatchTrainingJobResponse(job=convert.to_job(snapshot))

    async def CancelTrainingJob(
        self, request: pb.CancelTrainingJobRequest, context: Context
    ) -> pb.CancelTrainingJobResponse:
        """Cancels a queued or running job and returns it once it has stopped."""
        snapshot = await self._trainer.jobs.cancel(*names.parse_job_name(request.name))
        return pb.CancelTrainingJobResponse(job=convert.to_job(snapshot))

    async def StreamPredictions(
        self, request_iterator: AsyncIterator[pb.StreamPredictionsRequest], context: Context
    ) -> AsyncIterator[pb.StreamPredictionsResponse]:
        """Predicts the newest frame each time the model is free; older waiting ones drop."""
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        project_id = names.parse_project_name(first.project, field="project")
        model = self._trainer.latest_model(project_id)
        slot: LatestFrameSlot[tuple[int, bytes]] = LatestFrameSlot()
        slot.put((first.frame_id, first.image))

        async def read() -> None:
            try:
                async for request in requests:
                    slot.put((request.frame_id, request.image))
            finally:
                slot.close()

        reader = asyncio.create_task(read())
        try:
            while (taken := await slot.take()) is not None:
                (frame_id, image), dropped = taken
                ranked = await self._trainer.predict(model, image)
                yield convert.to_prediction(frame_id, ranked, model.card.labels, dropped)
            await reader
        finally:
            reader.cancel()

    async def Publish(self, request: pb.PublishRequest, context: Context) -> pb.PublishResponse:
        """Publishes the project's latest model as a disease, served here from then on."""
        project_id = names.parse_project_name(request.project, field="project")
        published = await self._trainer.publish(project_id, request.disease)
        return pb.PublishResponse(model=convert.to_model_info(published))

    async def ListPublishedModels(
        self, request: pb.ListPublishedModelsRequest, context: Context
    ) -> pb.ListPublishedModelsResponse:
        """Returns one page of the published models, sorted by disease."""
        return list_published_models(self._trainer.published.all(), request)


class PublishedDiagnosisServicer(diagnosis_service_pb2_grpc.DiagnosisServiceServicer):
    """Diagnoses images with the models the trainer has published, picked by disease."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    async def Diagnose(
        self, request: diagnosis_service_pb2.DiagnoseRequest, context: Context
    ) -> diagnosis_service_pb2.DiagnoseResponse:
        """Returns the class probabilities of one image, highest first."""
        published = self._trainer.published_model(_disease(request.disease))
        ranked = await self._trainer.predict(published.model, request.image)
        return convert.to_diagnose_response(ranked, published)

    async def GetModelInfo(
        self, request: diagnosis_service_pb2.GetModelInfoRequest, context: Context
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        """Returns the description of a published model."""
        published = self._trainer.published_model(_disease(request.disease))
        return diagnosis_service_pb2.GetModelInfoResponse(model=convert.to_model_info(published))


def list_projects(views: Sequence[ProjectView], request: pb.ListProjectsRequest) -> (
    pb.ListProjectsResponse
):  # fmt: skip
    """Returns the page of the projects (newest first) that request asks for.

    Raises:
        InvalidArgument: a negative page size, or a page token this trainer did not make.
    """
    ordered = sorted(views, key=_newest_first)
    chunk, token = pagination.page(ordered, _newest_first, request.page_size, request.page_token)
    return pb.ListProjectsResponse(
        projects=[convert.to_project(view) for view in chunk], next_page_token=token
    )


def _newest_first(view: ProjectView) -> str:
    # These keys sort ascending newest first (microseconds counted down from far in the
    # future); the id orders projects created in the same microsecond.
    micros = round(view.project.create_time * 1_000_000)
    return f"{10**17 - micros:018d}:{view.project.project_id}"


def list_published_models(
    published: Sequence[PublishedModel], request: pb.ListPublishedModelsRequest
) -> pb.ListPublishedModelsResponse:
    """Returns the page of published (sorted by disease) that request asks for.

    Raises:
        InvalidArgument: a negative page size, or a page token this trainer did not make.
    """
    models, token = pagination.page(published, _disease_of, request.page_size, request.page_token)
    return pb.ListPublishedModelsResponse(
        published_models=[convert.to_published_model(m) for m in models],
        next_page_token=token,
    )


def _disease_of(published: PublishedModel) -> str:
    return published.publication.disease


def _disease(disease: str) -> str:
    if not disease:
        raise InvalidArgument("disease is required: the trainer serves several published models")
    return disease


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
