"""The trainer and the gateway as real processes: teach, train, publish, diagnose, restart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_info_pb2,
    model_registry_pb2,
    model_registry_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
)

from tests.support.processes import (
    Process,
    free_port,
    start,
    start_trainer,
    wait_until_serving,
)
from trainer_service.demo_images import DEMO_LABELS, demo_images

pytestmark = pytest.mark.slow

pb = trainer_service_pb2
EXAMPLES_PER_LABEL = 12
EPOCHS = 3
SUCCEEDED = pb.TRAINING_JOB_STATE_SUCCEEDED
STARTED = (pb.TRAINING_JOB_STATE_QUEUED, pb.TRAINING_JOB_STATE_RUNNING)
# Fresh images (another seed) that the model never saw, one per label.
PROBES = [demo_images(index, 1, seed=99)[0] for index in range(len(DEMO_LABELS))]


@dataclass
class Stack:
    """The toy service (standing in for skin), the trainer and the gateway, on fixed ports."""

    root: Path
    toy: Process
    trainer_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    trainer: Process | None = None
    gateway: Process | None = None
    project: str = ""
    job: str = ""

    @property
    def gateway_address(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    @property
    def trainer_address(self) -> str:
        return f"127.0.0.1:{self.trainer_port}"

    def start(self) -> None:
        # Each side is told the other's address, so both ports are chosen in advance.
        self.trainer = start_trainer(
            port=self.trainer_port,
            data_dir=self.root / "trainer",
            gateway_address=self.gateway_address,
        )
        wait_until_serving(self.trainer, timeout=90)
        self.gateway = start(
            "gateway",
            "gateway",
            "GATEWAY_",
            port=self.gateway_port,
            env={
                "GATEWAY_ROUTES": f"skin=image@{self.toy.address};"
                f"trainer=trainer@{self.trainer_address}",
                "GATEWAY_STATE_DIR": str(self.root / "gateway"),
            },
        )
        wait_until_serving(self.gateway, timeout=90)

    def stop(self) -> None:
        for process in (self.gateway, self.trainer):
            if process is not None:
                assert process.terminate() == 0, process.log()

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.gateway_address)


def upload_requests(project: str) -> Iterator[pb.UploadExamplesRequest]:
    for index, label in enumerate(DEMO_LABELS):
        for image in demo_images(index, EXAMPLES_PER_LABEL, seed=1):
            yield pb.UploadExamplesRequest(project=project, label=label, image=image)


def diagnose(
    channel: grpc.Channel, disease: str, image: bytes
) -> diagnosis_service_pb2.DiagnoseResponse:
    stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
    request = diagnosis_service_pb2.DiagnoseRequest(disease=disease, image=image)
    return stub.Diagnose(request, timeout=30)


def list_models(channel: grpc.Channel) -> dict[str, model_registry_pb2.RegisteredModel]:
    stub = model_registry_pb2_grpc.ModelRegistryStub(channel)
    models = stub.ListModels(model_registry_pb2.ListModelsRequest(), timeout=30).models
    return {model.disease: model for model in models}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A running stack whose trainer holds one project trained on three shapes, unpublished."""
    toy = start("toy", "tests.toy_service", "TOY_")
    wait_until_serving(toy)
    running = Stack(tmp_path_factory.mktemp("stack"), toy)
    try:
        running.start()
        with running.channel() as channel:
            trainer = trainer_service_pb2_grpc.TrainerServiceStub(channel)
            created = trainer.CreateProject(
                pb.CreateProjectRequest(display_name="shapes", labels=list(DEMO_LABELS)),
                timeout=30,
            )
            running.project = created.project.name
            uploaded = trainer.UploadExamples(upload_requests(running.project), timeout=120)
            assert uploaded.accepted_count == EXAMPLES_PER_LABEL * len(DEMO_LABELS)
            assert list(uploaded.example_counts) == [EXAMPLES_PER_LABEL] * len(DEMO_LABELS)
            train = pb.TrainRequest(
                project=running.project,
                epochs=EPOCHS,
                batch_size=8,
                learning_rate=0.005,
                validation_split=0.25,
                seed=7,
            )
            events = [event.job for event in trainer.Train(train, timeout=300)]
        assert events[0].state in STARTED
        assert events[-1].state == SUCCEEDED, events[-1].error_message
        epochs = [job.latest_metrics.epoch for job in events if job.HasField("latest_metrics")]
        assert epochs == sorted(epochs) and epochs[-1] == EPOCHS
        running.job = events[-1].name
        yield running
    finally:
        running.stop()
        toy.terminate()


def test_every_kind_of_trainer_call_works_through_the_gateway(stack: Stack) -> None:
    with stack.channel() as channel:
        trainer = trainer_service_pb2_grpc.TrainerServiceStub(channel)
        project = trainer.GetProject(pb.GetProjectRequest(name=stack.project), timeout=30).project
        listed = trainer.ListProjects(pb.ListProjectsRequest(), timeout=30).projects
        job = trainer.GetTrainingJob(pb.GetTrainingJobRequest(name=stack.job), timeout=30).job
        watched = list(trainer.WatchTrainingJob(pb.WatchTrainingJobRequest(name=stack.job)))
        frames = (
            pb.StreamPredictionsRequest(project=stack.project, image=image, frame_id=number)
            for number, image in enumerate(PROBES, start=1)
        )
        predictions = list(trainer.StreamPredictions(frames, timeout=60))
    assert list(project.labels) == list(DEMO_LABELS)
    assert project.latest_training_job == stack.job
    assert stack.project in [p.name for p in listed]
    assert job.state == SUCCEEDED and job.latest_metrics.epoch == EPOCHS
    assert [w.job.state for w in watched] == [SUCCEEDED]
    assert predictions, "the trainer answered no frame"
    for prediction in predictions:
        assert 1 <= prediction.frame_id <= len(PROBES)
        assert prediction.top_label in DEMO_LABELS
        assert [score.label for score in prediction.scores] == list(DEMO_LABELS)
    # Frames are answered in order; a newer frame may replace a waiting one, never the last.
    ids = [prediction.frame_id for prediction in predictions]
    assert ids == sorted(ids) and ids[-1] == len(PROBES)


def test_a_published_model_is_diagnosed_through_the_gateway_also_after_both_restart(
    stack: Stack,
) -> None:
    with stack.channel() as channel:
        trainer = trainer_service_pb2_grpc.TrainerServiceStub(channel)
        published = trainer.Publish(
            pb.PublishRequest(project=stack.project, disease="shapes"), timeout=60
        ).model
        before = [diagnose(channel, "shapes", probe) for probe in PROBES]
        info = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel).GetModelInfo(
            diagnosis_service_pb2.GetModelInfoRequest(disease="shapes"), timeout=30
        )
        models = list_models(channel)
    assert published.disease == "shapes" and published.model_name == "trainer-shapes"
    assert list(published.labels) == list(DEMO_LABELS)
    for answer in before:
        assert answer.model_name == "trainer-shapes"
        assert sorted(score.label for score in answer.scores) == sorted(DEMO_LABELS)
        assert answer.top_label in DEMO_LABELS
    assert list(info.model.labels) == list(DEMO_LABELS)
    assert stack.job.endswith("/" + info.model.model_version)
    assert "trainer" not in models
    assert models["shapes"].available
    assert models["shapes"].kind == model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER
    assert list(models["shapes"].model.labels) == list(DEMO_LABELS)

    stack.stop()
    stack.start()

    with stack.channel() as channel:
        after = [diagnose(channel, "shapes", probe) for probe in PROBES]
        models = list_models(channel)
    assert models["shapes"].available
    for old, new in zip(before, after, strict=True):
        assert new.model_name == "trainer-shapes"
        assert new.top_label == old.top_label
        assert [s.label for s in new.scores] == [s.label for s in old.scores]
        for old_score, new_score in zip(old.scores, new.scores, strict=True):
            assert new_score.score == pytest.approx(old_score.score, abs=1e-4)


def test_publishing_under_a_configured_disease_is_refused_and_the_route_survives(
    stack: Stack,
) -> None:
    with grpc.insecure_channel(stack.toy.address) as toy_channel:
        toy_answer = diagnose(toy_channel, "skin", PROBES[0])
    with stack.channel() as channel:
        trainer = trainer_service_pb2_grpc.TrainerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            trainer.Publish(pb.PublishRequest(project=stack.project, disease="skin"), timeout=60)
        skin = diagnose(channel, "skin", PROBES[0])
        project = trainer.GetProject(pb.GetProjectRequest(name=stack.project), timeout=30).project
        models = list_models(channel)
    with (
        grpc.insecure_channel(stack.trainer_address) as direct,
        pytest.raises(grpc.RpcError) as not_published,
    ):
        diagnose(direct, "skin", PROBES[0])
    error: grpc.Call = caught.value  # type: ignore[assignment]
    assert error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS)
    assert "skin" in (error.details() or "")
    assert skin.model_name == toy_answer.model_name != "trainer-skin"
    assert models["skin"].model.model_name == toy_answer.model_name
    assert project.published_disease != "skin"
    missing: grpc.Call = not_published.value  # type: ignore[assignment]
    assert missing.code() == grpc.StatusCode.NOT_FOUND
