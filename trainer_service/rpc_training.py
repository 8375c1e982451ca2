"""The bodies of TrainerService's training job RPCs: request in, response (or stream) out."""

from __future__ import annotations

from collections.abc import AsyncIterator

from medimg.v1 import trainer_service_pb2 as pb

from trainer_service import convert, names
from trainer_service.names import TrainParams
from trainer_service.service import Trainer


async def train(trainer: Trainer, request: pb.TrainRequest) -> AsyncIterator[pb.TrainResponse]:
    """Starts a job and yields its events; the job outlives the stream."""
    project_id = names.parse_project_name(request.project, field="project")
    params = TrainParams.from_request(
        epochs=request.epochs,
        batch_size=request.batch_size,
        learning_rate=request.learning_rate,
        validation_split=request.validation_split,
        seed=request.seed,
    )
    _, events = trainer.start_training(project_id, params)
    async for snapshot in events:
        yield pb.TrainResponse(job=convert.to_job(snapshot))


def get_training_job(
    trainer: Trainer, request: pb.GetTrainingJobRequest
) -> pb.GetTrainingJobResponse:
    """Returns a job's state and latest metrics."""
    snapshot = trainer.jobs.get(*names.parse_job_name(request.name))
    return pb.GetTrainingJobResponse(job=convert.to_job(snapshot))


async def watch_training_job(
    trainer: Trainer, request: pb.WatchTrainingJobRequest
) -> AsyncIterator[pb.WatchTrainingJobResponse]:
    """Yields a job's events from now until it ends."""
    events = trainer.jobs.watch(*names.parse_job_name(request.name))
    async for snapshot in events:
        yield pb.WatchTrainingJobResponse(job=convert.to_job(snapshot))


async def cancel_training_job(
    trainer: Trainer, request: pb.CancelTrainingJobRequest
) -> pb.CancelTrainingJobResponse:
    """Cancels a queued or running job and returns it once it has stopped."""
    snapshot = await trainer.jobs.cancel(*names.parse_job_name(request.name))
    return pb.CancelTrainingJobResponse(job=convert.to_job(snapshot))
