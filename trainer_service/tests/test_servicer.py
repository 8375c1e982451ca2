"""The trainer on a real gRPC server with real torch: training, cancel, queue, live, publish."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from medimg.v1 import diagnosis_service_pb2 as dpb
from medimg.v1 import trainer_service_pb2 as pb

from trainer_service.demo_images import DEMO_LABELS, demo_images
from trainer_service.tests.conftest import RunningTrainer, new_project, running_trainer

State = pb.TrainingJobState
TERMINAL = {
    pb.TRAINING_JOB_STATE_SUCCEEDED,
    pb.TRAINING_JOB_STATE_FAILED,
    pb.TRAINING_JOB_STATE_CANCELLED,
}


async def train(
    client: RunningTrainer, project: str, *, epochs: int, seed: int = 7
) -> list[pb.TrainingJob]:
    request = pb.TrainRequest(project=project, epochs=epochs, seed=seed, validation_split=0.2)
    return [event.job async for event in client.stub.Train(request)]


async def first_epoch(events: AsyncIterator[pb.TrainResponse]) -> pb.TrainingJob:
    async for event in events:
        if event.job.HasField("latest_metrics"):
            return event.job
    raise AssertionError("the job ended before its first epoch")


def frames(project: str, images: list[bytes]) -> list[pb.StreamPredictionsRequest]:
    return [
        pb.StreamPredictionsRequest(project=project if i == 0 else "", image=image, frame_id=i)
        for i, image in enumerate(images)
    ]


@pytest.mark.slow
async def test_training_reaches_high_validation_accuracy_with_ordered_events(
    tmp_path: Path,
) -> None:
    async with running_trainer(tmp_path) as client:
        project = await new_project(client.stub, per_label=30)
        started = time.monotonic()
        events = await train(client, project, epochs=15)
        seconds = time.monotonic() - started
        metrics = events[-1].latest_metrics
        print(
            f"trained 3 x 30 examples, 15 epochs, in {seconds:.1f}s: validation accuracy "
            f"{metrics.validation_accuracy:.3f}, accuracy {metrics.accuracy:.3f}, "
            f"loss {metrics.loss:.3f}"
        )
        assert seconds < 60
        assert events[0].state in (
            State.TRAINING_JOB_STATE_QUEUED,
            State.TRAINING_JOB_STATE_RUNNING,
        )
        assert [e.state for e in events[:-1]] == sorted(e.state for e in events[:-1])
        epochs = [e.latest_metrics.epoch for e in events if e.HasField("latest_metrics")]
        assert epochs[: len(range(1, 16))] == list(range(1, 16))
        final = events[-1]
        assert final.state == State.TRAINING_JOB_STATE_SUCCEEDED
        assert final.HasField("end_time")
        assert final.latest_metrics.epoch == final.latest_metrics.total_epochs == 15
        assert final.latest_metrics.validation_accuracy >= 0.9
        assert final.latest_metrics.eta_seconds == 0
        assert final.latest_metrics.elapsed_seconds > 0
        assert all(e.state not in TERMINAL for e in events[:-1])

        got = await client.stub.GetProject(pb.GetProjectRequest(name=project))
        assert got.project.latest_training_job == final.name
        assert list(got.project.example_counts) == [30, 30, 30]

        # One frame at a time, each a fresh image of a known class.
        for index, label in enumerate(DEMO_LABELS):
            images = demo_images(index, 3, seed=99)
            call = client.stub.StreamPredictions()
            for frame_id, image in enumerate(images):
                await call.write(
                    pb.StreamPredictionsRequest(project=project, image=image, frame_id=frame_id)
                )
                response = await call.read()
                assert (response.frame_id, response.top_label) == (frame_id, label)
                # medimg.v1's one order of class scores: highest first, every label once.
                assert sorted(s.label for s in response.scores) == sorted(DEMO_LABELS)
                assert response.scores[0].label == response.top_label
                values = [s.score for s in response.scores]
                assert values == sorted(values, reverse=True)
                assert response.dropped_frame_count == 0
            await call.done_writing()

        # Same seed and data: the same metrics.
        again = await train(client, project, epochs=15)
        assert again[-1].latest_metrics.loss == final.latest_metrics.loss
        assert (
            again[-1].latest_metrics.validation_accuracy == final.latest_metrics.validation_accuracy
        )


@pytest.mark.slow
async def test_cancel_stops_a_running_training_and_keeps_the_earlier_model(tmp_path: Path) -> None:
    async with running_trainer(tmp_path) as client:
        project = await new_project(client.stub, per_label=8)
        earlier = (await train(client, project, epochs=2))[-1]
        assert earlier.state == State.TRAINING_JOB_STATE_SUCCEEDED

        stream = client.stub.Train(pb.TrainRequest(project=project, epochs=200))
        running = await first_epoch(aiter(stream))
        asked = time.monotonic()
        cancelled = await client.stub.CancelTrainingJob(
            pb.CancelTrainingJobRequest(name=running.name)
        )
        assert time.monotonic() - asked < 5
        assert cancelled.job.state == State.TRAINING_JOB_STATE_CANCELLED
        rest = [event.job async for event in stream]
        assert rest[-1].state == State.TRAINING_JOB_STATE_CANCELLED
        assert rest[-1].latest_metrics.epoch < 200

        got = await client.stub.GetProject(pb.GetProjectRequest(name=project))
        assert got.project.latest_training_job == earlier.name
        job = await client.stub.GetTrainingJob(pb.GetTrainingJobRequest(name=running.name))
        assert job.job.state == State.TRAINING_JOB_STATE_CANCELLED


@pytest.mark.slow
async def test_a_second_training_of_a_project_waits_for_the_first(tmp_path: Path) -> None:
    async with running_trainer(tmp_path) as client:
        project = await new_project(client.stub, per_label=4)
        first = client.stub.Train(pb.TrainRequest(project=project, epochs=200))
        first_job = (await anext(aiter(first))).job
        assert first_job.state == State.TRAINING_JOB_STATE_RUNNING
        second = client.stub.Train(pb.TrainRequest(project=project, epochs=1))
        second_events = aiter(second)
        second_job = (await anext(second_events)).job
        assert second_job.state == State.TRAINING_JOB_STATE_QUEUED

        watched = client.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(name=second_job.name))
        assert (await anext(aiter(watched))).job.state == State.TRAINING_JOB_STATE_QUEUED
        await client.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(name=first_job.name))
        rest = [event.job.state async for event in second_events]
        assert rest[0] == State.TRAINING_JOB_STATE_RUNNING
        assert rest[-1] == State.TRAINING_JOB_STATE_SUCCEEDED
        assert [e.job.state async for e in watched][-1] == State.TRAINING_JOB_STATE_SUCCEEDED


@pytest.mark.slow
async def test_live_predictions_drop_stale_frames_and_answer_the_last_one(tmp_path: Path) -> None:
    async with running_trainer(tmp_path) as client:
        project = await new_project(client.stub, per_label=4)
        await train(client, project, epochs=1)
        images = [demo_images(i % 3, 1, seed=i, size=320)[0] for i in range(120)]
        responses = [r async for r in client.stub.StreamPredictions(iter(frames(project, images)))]
        assert responses[-1].frame_id == 119
        assert sum(1 + r.dropped_frame_count for r in responses) == 120
        assert any(r.dropped_frame_count > 0 for r in responses)
        ids = [r.frame_id for r in responses]
        assert ids == sorted(ids)
        print(f"{len(responses)} predictions for 120 frames")


async def expect_error(call: object, code: grpc.StatusCode, text: str = "") -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    assert text in (caught.value.details() or "")
    return caught.value.details() or ""


async def test_invalid_inputs_are_refused_and_store_nothing(tmp_path: Path) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    async with running_trainer(tmp_path) as client:
        stub = client.stub
        for labels in (["one"], ["a", "a"], ["a", "b/c"]):
            await expect_error(stub.CreateProject(pb.CreateProjectRequest(labels=labels)), invalid)
        project = await new_project(stub)
        good = demo_images(0, 2, seed=1)
        for bad, reason in ((b"not an image", "not a readable image"), (b"", "empty"),
                            (b"\xff\xd8" + bytes(4 * 1024 * 1024), "limit")):  # fmt: skip
            requests = [pb.UploadExamplesRequest(project=project, label="circle", image=image)
                        for image in (good[0], good[1], bad)]  # fmt: skip
            details = await expect_error(stub.UploadExamples(iter(requests)), invalid, "example 2")
            assert reason in details
        wrong_label = [pb.UploadExamplesRequest(project=project, label="oval", image=good[0])]
        await expect_error(stub.UploadExamples(iter(wrong_label)), invalid, "oval")
        got = await stub.GetProject(pb.GetProjectRequest(name=project))
        assert list(got.project.example_counts) == [0, 0, 0]

        await expect_error(
            stub.GetProject(pb.GetProjectRequest(name="projects/000000000000")),
            grpc.StatusCode.NOT_FOUND,
        )
        await expect_error(
            stub.GetTrainingJob(
                pb.GetTrainingJobRequest(name=f"{project}/trainingJobs/000000000000")
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        await expect_error(
            stub.Train(pb.TrainRequest(project=project)).read(),
            grpc.StatusCode.FAILED_PRECONDITION,
            "'circle'",
        )
        await expect_error(
            stub.Train(pb.TrainRequest(project=project, epochs=500)).read(), invalid, "epochs"
        )
        await expect_error(
            stub.StreamPredictions(iter(frames(project, good))).read(),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        await expect_error(
            stub.Publish(pb.PublishRequest(project=project, disease="Bad Name")), invalid
        )
        await expect_error(
            client.diagnosis.Diagnose(dpb.DiagnoseRequest(disease="nothing", image=good[0])),
            grpc.StatusCode.NOT_FOUND,
        )
        nothing = await stub.ListPublishedModels(pb.ListPublishedModelsRequest())
        assert list(nothing.published_models) == [] and nothing.next_page_token == ""
        for listing, field in (
            (pb.ListPublishedModelsRequest(page_token="nope"), "page_token"),
            (pb.ListPublishedModelsRequest(page_size=-1), "page_size"),
        ):
            await expect_error(stub.ListPublishedModels(listing), invalid, field)
        assert not list(client.trainer.store.staging_dir.iterdir())


@pytest.mark.slow
async def test_publish_serves_and_lists_the_model_and_everything_survives_a_restart(
    tmp_path: Path,
) -> None:
    circle = demo_images(0, 1, seed=123)[0]
    async with running_trainer(tmp_path) as client:
        project = await new_project(client.stub, per_label=10)
        job = (await train(client, project, epochs=8))[-1]
        # No gateway runs: publishing calls nobody, the gateway asks for the models.
        published = await client.stub.Publish(pb.PublishRequest(project=project, disease="shapes"))
        assert published.model.model_name == "trainer-shapes"
        assert published.model.model_version == job.name.rsplit("/", 1)[1]
        assert list(published.model.labels) == list(DEMO_LABELS)
        assert published.model.demo_model
        served = await client.diagnosis.Diagnose(
            dpb.DiagnoseRequest(disease="shapes", image=circle)
        )
        assert {s.label for s in served.scores} == set(DEMO_LABELS)
        listed = await client.stub.ListPublishedModels(pb.ListPublishedModelsRequest())
        (entry,) = listed.published_models
        assert (entry.disease, entry.project, entry.training_job) == ("shapes", project, job.name)
        assert entry.model == published.model
        assert abs(entry.publish_time.seconds - time.time()) < 600
        assert listed.next_page_token == ""

        other = await new_project(client.stub, per_label=2)
        await train(client, other, epochs=1)
        await expect_error(
            client.stub.Publish(pb.PublishRequest(project=other, disease="shapes")),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        await client.stub.Publish(pb.PublishRequest(project=other, disease="other-shapes"))
        # A job running at shutdown fails as interrupted after the restart.
        interrupted = await first_epoch(
            aiter(client.stub.Train(pb.TrainRequest(project=other, epochs=200)))
        )

    async with running_trainer(tmp_path) as client:
        first = await client.stub.ListPublishedModels(pb.ListPublishedModelsRequest(page_size=1))
        second = await client.stub.ListPublishedModels(
            pb.ListPublishedModelsRequest(page_size=1, page_token=first.next_page_token)
        )
        assert [m.disease for m in first.published_models] == ["other-shapes"]
        assert [m.disease for m in second.published_models] == ["shapes"]
        assert first.next_page_token and not second.next_page_token
        assert second.published_models[0] == entry
        got = await client.stub.GetProject(pb.GetProjectRequest(name=project))
        assert got.project.published_disease == "shapes"
        restored = await client.stub.GetTrainingJob(pb.GetTrainingJobRequest(name=job.name))
        assert restored.job.state == State.TRAINING_JOB_STATE_SUCCEEDED
        assert restored.job.latest_metrics.epoch == 8
        lost = await client.stub.GetTrainingJob(pb.GetTrainingJobRequest(name=interrupted.name))
        assert lost.job.state == State.TRAINING_JOB_STATE_FAILED
        assert "restart" in lost.job.error_message
        direct = await client.diagnosis.Diagnose(
            dpb.DiagnoseRequest(disease="shapes", image=circle)
        )
        assert direct.model_name == "trainer-shapes"
        assert direct.scores == served.scores
