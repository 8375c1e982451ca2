"""Fixtures of the trainer's tests: a real trainer server on a loopback port, and its clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from medimg.v1 import diagnosis_service_pb2_grpc, trainer_service_pb2, trainer_service_pb2_grpc

from servicekit.server import Server
from tests.support.processes import free_port
from trainer_service.demo_images import DEMO_LABELS, demo_images
from trainer_service.service import Trainer
from trainer_service.servicer import bindings
from trainer_service.settings import Settings

pb = trainer_service_pb2


@dataclass
class RunningTrainer:
    """A trainer server in this process with stubs on one channel."""

    trainer: Trainer
    address: str
    # The generated stubs are typed for the blocking API; on an aio channel calls are awaitables.
    stub: Any
    diagnosis: Any


@asynccontextmanager
async def running_trainer(data_dir: Path, **env: str) -> AsyncIterator[RunningTrainer]:
    """Serves a trainer on a free loopback port until the block ends."""
    port = free_port()
    settings = Settings.from_env(
        {
            "TRAINER_PORT": str(port),
            "TRAINER_DATA_DIR": str(data_dir),
            "TRAINER_GRACE_SECONDS": "1",
            **env,
        }
    )
    trainer = Trainer(settings)
    server = Server(settings.server, bindings(trainer), lifecycle=trainer)
    await server.start()
    address = f"127.0.0.1:{settings.server.port}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield RunningTrainer(
                trainer,
                address,
                trainer_service_pb2_grpc.TrainerServiceStub(channel),
                diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel),
            )
    finally:
        await server.stop(grace=1)


def upload_requests(project: str, per_label: int, seed: int) -> Iterator[pb.UploadExamplesRequest]:
    """Yields per_label demo examples of every demo label."""
    for index, label in enumerate(DEMO_LABELS):
        for image in demo_images(index, per_label, seed):
            yield pb.UploadExamplesRequest(project=project, label=label, image=image)


async def new_project(stub: Any, *, per_label: int = 0, seed: int = 1) -> str:
    """Creates a demo project, uploads per_label examples of each label, returns its name."""
    response = await stub.CreateProject(
        pb.CreateProjectRequest(display_name="shapes", labels=list(DEMO_LABELS))
    )
    name: str = response.project.name
    if per_label:
        await stub.UploadExamples(upload_requests(name, per_label, seed))
    return name
