"""The TrainerService proxy in-process against a TrainerService double: the mechanics only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import grpc.aio
import pytest
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_registry_pb2,
    model_registry_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
)

from gateway.router import Router
from gateway.servicer import TrainerProxy
from gateway.tests.doubles import (
    FakeDiagnosis,
    FakeTrainer,
    closed_port,
    gateway,
    gateway_settings,
    upstream,
)
from gateway.tests.test_proxy import error_reason
from gateway.trainer_calls import TRAINER_SERVICE

pb = trainer_service_pb2


@asynccontextmanager
async def through_gateway(
    tmp_path: Path, trainer: FakeTrainer
) -> AsyncIterator[trainer_service_pb2_grpc.TrainerServiceAsyncStub]:
    """Runs trainer and a gateway routing to it; yields a TrainerService stub on the gateway."""
    async with upstream(trainer) as address:
        settings = gateway_settings(tmp_path, ROUTES=f"trainer=trainer@{address}")
        async with gateway(settings) as channel:
            yield trainer_service_pb2_grpc.TrainerServiceStub(channel)


def frame(frame_id: int, image: bytes = b"jpeg") -> pb.StreamPredictionsRequest:
    return pb.StreamPredictionsRequest(project="projects/p", image=image, frame_id=frame_id)


def example(image: bytes) -> pb.UploadExamplesRequest:
    return pb.UploadExamplesRequest(project="projects/p", label="a", image=image)


def test_it_proxies_every_trainer_method_with_its_streaming_shape(tmp_path: Path) -> None:
    service = pb.DESCRIPTOR.services_by_name["TrainerService"]
    handlers = TrainerProxy(Router(gateway_settings(tmp_path))).method_handlers()
    shapes = {
        name: (handler.request_streaming, handler.response_streaming)
        for name, handler in handlers.items()
    }
    expected = {
        method.name: (method.client_streaming, method.server_streaming)
        for method in service.methods
    }
    assert TRAINER_SERVICE == "medimg.v1.TrainerService"
    assert len(expected) == 12
    assert shapes == expected


async def test_unary_calls_reach_the_trainer_route_with_request_id_and_deadline(
    tmp_path: Path,
) -> None:
    trainer = FakeTrainer()
    async with upstream(trainer) as t:
        settings = gateway_settings(tmp_path, ROUTES=f"trainer=trainer@{t}")
        async with gateway(settings) as channel:
            stub = trainer_service_pb2_grpc.TrainerServiceStub(channel)
            created = await stub.CreateProject(
                pb.CreateProjectRequest(display_name="cups", labels=["mug", "glass"]),
                metadata=(("x-request-id", "req-7"),),
                timeout=5,
            )
    assert created.project.name == "projects/0123456789ab"
    assert list(created.project.labels) == ["mug", "glass"]
    assert trainer.request_ids == ["req-7"]
    remaining = trainer.time_remaining[0]
    assert remaining is not None and 4 < remaining <= 5.1


async def test_it_passes_the_trainers_errors_through_with_their_details(tmp_path: Path) -> None:
    async with through_gateway(tmp_path, FakeTrainer()) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetProject(pb.GetProjectRequest(name="projects/missing"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no project is called 'projects/missing'"
    assert error_reason(caught.value) == "PROJECT_NOT_FOUND"


async def test_it_retries_reads_but_never_changes_on_unavailable(tmp_path: Path) -> None:
    trainer = FakeTrainer()
    async with through_gateway(tmp_path, trainer) as stub:
        project = await stub.GetProject(pb.GetProjectRequest(name="projects/flaky"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateProject(pb.CreateProjectRequest(display_name="flaky"))
    assert project.project.name == "projects/flaky"
    assert trainer.calls["GetProject"] == 2
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "the trainer is restarting"
    assert trainer.calls["CreateProject"] == 1


async def test_it_answers_unavailable_naming_the_missing_trainer_route(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"skin=image@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        stub = trainer_service_pb2_grpc.TrainerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.ListProjects(pb.ListProjectsRequest(), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in stub.Train(pb.TrainRequest(project="projects/p", epochs=1), timeout=5):
                pass
        with pytest.raises(grpc.aio.AioRpcError) as bidi:
            async for _ in stub.StreamPredictions(iter([frame(1)]), timeout=5):
                pass
    for caught in (unary, streamed, bidi):
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "trainer is not configured" in (caught.value.details() or "")
        assert error_reason(caught.value) == "TRAINER_NOT_CONFIGURED"


async def test_it_answers_unavailable_quickly_when_the_trainer_is_down(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"trainer=trainer@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        stub = trainer_service_pb2_grpc.TrainerServiceStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(pb.PublishRequest(project="projects/p", disease="cups"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(name="x"), timeout=10):
                pass
        elapsed = time.monotonic() - started
    for error in (caught.value, streamed.value):
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == "the trainer service cannot be reached; try again shortly"
        assert error_reason(error) == "BACKEND_UNAVAILABLE"
    assert elapsed < 2.0


async def test_it_streams_training_events_and_then_the_trainers_status(tmp_path: Path) -> None:
    trainer = FakeTrainer()
    async with through_gateway(tmp_path, trainer) as stub:
        events = [
            event.job.latest_metrics.epoch
            async for event in stub.Train(pb.TrainRequest(project="projects/p", epochs=3))
        ]
        failing = stub.Train(pb.TrainRequest(project="projects/failing", epochs=3))
        first = await failing.read()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await failing.read()
    assert events == [1, 2, 3]
    assert trainer.time_remaining == [None, None]  # a training is followed without a cap
    assert isinstance(first, pb.TrainResponse) and first.job.latest_metrics.epoch == 1
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "the training diverged"
    assert error_reason(caught.value) == "TRAINING_FAILED"


async def test_a_caller_leaving_a_training_stream_cancels_the_upstream_call(
    tmp_path: Path,
) -> None:
    trainer = FakeTrainer()
    async with through_gateway(tmp_path, trainer) as stub:
        call = stub.Train(pb.TrainRequest(project="projects/endless", epochs=1), timeout=30)
        await call.read()
        call.cancel()
        await asyncio.wait_for(trainer.cancelled_event.wait(), timeout=5)
    assert trainer.cancelled == {"Train"}


async def test_it_forwards_examples_as_they_arrive(tmp_path: Path) -> None:
    trainer = FakeTrainer()
    async with through_gateway(tmp_path, trainer) as stub:
        call = stub.UploadExamples(timeout=10)
        await call.write(example(b"one"))
        # The trainer must have the first example while the client still holds the second.
        await asyncio.wait_for(trainer.first_upload.wait(), timeout=5)
        await call.write(example(b"two"))
        await call.done_writing()
        response = await call
    assert response.accepted_count == 2
    assert trainer.uploaded == [b"one", b"two"]
    assert trainer.calls["UploadExamples"] == 1


async def test_a_cancelled_upload_is_cancelled_upstream_and_stores_nothing(
    tmp_path: Path,
) -> None:
    trainer = FakeTrainer()
    async with through_gateway(tmp_path, trainer) as stub:
        call = stub.UploadExamples(timeout=10)
        await call.write(example(b"one"))
        await asyncio.wait_for(trainer.first_upload.wait(), timeout=5)
        call.cancel()
        await asyncio.wait_for(trainer.cancelled_event.wait(), timeout=5)
    assert trainer.cancelled == {"UploadExamples"}
    assert trainer.stored == 0


async def test_predictions_come_back_one_frame_at_a_time_without_buffering(
    tmp_path: Path,
) -> None:
    trainer = FakeTrainer()
    async with through_gateway(tmp_path, trainer) as stub:
        call = stub.StreamPredictions()
        answered = []
        # Each prediction must come back before the next frame is sent: a proxy that
        # waited for more frames, or for the end of the stream, would hang here.
        for frame_id in range(1, 4):
            await call.write(frame(frame_id))
            response = await asyncio.wait_for(call.read(), timeout=5)
            assert isinstance(response, pb.StreamPredictionsResponse)
            answered.append(response.frame_id)
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    assert answered == [1, 2, 3]
    assert trainer.time_remaining == [None]


async def test_a_bad_frame_ends_the_prediction_stream_with_the_trainers_status(
    tmp_path: Path,
) -> None:
    async with through_gateway(tmp_path, FakeTrainer()) as stub:
        call = stub.StreamPredictions(timeout=10)
        await call.write(frame(1))
        await call.read()
        await call.write(frame(2, b"bad"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "frame 2 is not an image"
    assert error_reason(caught.value) == "IMAGE_INVALID"


async def test_a_caller_leaving_live_prediction_cancels_the_upstream_stream(
    tmp_path: Path,
) -> None:
    trainer = FakeTrainer()
    async with through_gateway(tmp_path, trainer) as stub:
        call = stub.StreamPredictions(timeout=30)
        await call.write(frame(1))
        await call.read()
        call.cancel()
        await asyncio.wait_for(trainer.cancelled_event.wait(), timeout=5)
    assert trainer.cancelled == {"StreamPredictions"}


async def test_the_trainer_route_is_neither_listed_nor_diagnosed(tmp_path: Path) -> None:
    async with upstream(FakeDiagnosis("alice")) as a, upstream(FakeTrainer()) as t:
        routes = f"skin=image@{a};trainer=trainer@{t}"
        async with gateway(gateway_settings(tmp_path, ROUTES=routes)) as channel:
            registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
            listed = await registry.ListModels(model_registry_pb2.ListModelsRequest())
            diagnosis = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await diagnosis.Diagnose(diagnosis_service_pb2.DiagnoseRequest(disease="trainer"))
    assert [m.disease for m in listed.models] == ["skin"]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "DISEASE_UNKNOWN"
    assert "known image diseases: skin" in (caught.value.details() or "")
