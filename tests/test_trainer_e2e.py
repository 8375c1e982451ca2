"""The trainer and two gateway replicas as real processes: teach, train, publish, restart."""

from __future__ import annotations

import time
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
# The gateways' GATEWAY_TRAINER_POLL_SECONDS: short, so a replica learns within the test.
POLL_S = 0.5
# Time a loaded two-core machine may add to one poll period (a poll, a scheduling delay).
POLL_SLACK_S = 1.5
EXAMPLES_PER_LABEL = 12
EPOCHS = 3
SUCCEEDED = pb.TRAINING_JOB_STATE_SUCCEEDED
STARTED = (pb.TRAINING_JOB_STATE_QUEUED, pb.TRAINING_JOB_STATE_RUNNING)
# Fresh images (another seed) that the model never saw, one per label.
PROBES = [demo_images(index, 1, seed=99)[0] for index in range(len(DEMO_LABELS))]


@dataclass
class Stack:
    """The toy service (standing in for skin), the trainer and two gateway replicas.

    Both replicas route to the one trainer and learn its published models by polling it
    every POLL_S; nothing tells the trainer where they are. Ports are fixed so that a
    restarted process comes back at the same address.
    """

    root: Path
    toy: Process
    trainer_port: int = field(default_factory=free_port)
    gateway_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    trainer: Process | None = None
    gateways: list[Process] = field(default_factory=list)
    project: str = ""
    job: str = ""
    # Each gateway start gets a new, empty state directory: nothing it learns is saved.
    starts: int = 0

    @property
    def trainer_address(self) -> str:
        return f"127.0.0.1:{self.trainer_port}"

    def start(self) -> None:
        self.start_trainer()
        self.gateways = [self.start_gateway(replica) for replica in (0, 1)]

    def start_trainer(self) -> None:
        self.trainer = start_trainer(port=self.trainer_port, data_dir=self.root / "trainer")
        wait_until_serving(self.trainer, timeout=90)

    def start_gateway(self, replica: int) -> Process:
        self.starts += 1
        gateway = start(
            "gateway",
            "gateway",
            "GATEWAY_",
            port=self.gateway_ports[replica],
            env={
                "GATEWAY_ROUTES": f"skin=image@{self.toy.address};"
                f"trainer=trainer@{self.trainer_address}",
                "GATEWAY_STATE_DIR": str(self.state_dir(self.starts)),
                "GATEWAY_TRAINER_POLL_SECONDS": str(POLL_S),
                # Asked anew every time: ListModels then shows availability as it is now.
                "GATEWAY_MODEL_INFO_TTL_SECONDS": "0",
            },
        )
        wait_until_serving(gateway, timeout=90)
        return gateway

    def state_dir(self, start_number: int) -> Path:
        return self.root / f"gateway-{start_number}"

    def restart_gateway(self, replica: int) -> None:
        assert self.gateways[replica].terminate() == 0, self.gateways[replica].log()
        self.gateways[replica] = self.start_gateway(replica)

    def stop(self) -> None:
        for process in (*self.gateways, self.trainer):
            if process is not None:
                assert process.terminate() == 0, process.log()

    def channel(self, replica: int = 0) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.gateway_ports[replica]}")


@dataclass(frozen=True)
class Published:
    """ "shapes" as published through replica A, with what each replica answered then."""

    model: model_info_pb2.ModelInfo
    answers: list[diagnosis_service_pb2.DiagnoseResponse]
    # Seconds from the end of Publish until replica B routed the model.
    replica_b_after_s: float


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
            counted = [(c.label, c.example_count) for c in uploaded.label_counts]
            assert counted == [(label, EXAMPLES_PER_LABEL) for label in DEMO_LABELS]
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
        # medimg.v1's one order of class scores: highest first, every label once.
        assert sorted(score.label for score in prediction.scores) == sorted(DEMO_LABELS)
        assert prediction.scores[0].label == prediction.top_label
    # Frames are answered in order; a newer frame may replace a waiting one, never the last.
    ids = [prediction.frame_id for prediction in predictions]
    assert ids == sorted(ids) and ids[-1] == len(PROBES)


def diagnose_until_routed(
    channel: grpc.Channel, disease: str, image: bytes, timeout: float
) -> diagnosis_service_pb2.DiagnoseResponse:
    """Diagnoses until the gateway routes disease; fails on any other error or at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return diagnose(channel, disease, image)
        except grpc.RpcError as error:
            code = error.code()
            assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE), error
            assert time.monotonic() < deadline, f"{disease} not routed after {timeout}s: {error}"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def published(stack: Stack) -> Published:
    """Publishes the project as "shapes" through replica A and times replica B learning it."""
    with stack.channel(0) as a, stack.channel(1) as b:
        trainer = trainer_service_pb2_grpc.TrainerServiceStub(a)
        model = trainer.Publish(
            pb.PublishRequest(project=stack.project, disease="shapes"), timeout=60
        ).model
        done = time.monotonic()
        # No retry on A: the replica that handled the Publish routes the model at once.
        answers = [diagnose(a, "shapes", probe) for probe in PROBES]
        diagnose_until_routed(b, "shapes", PROBES[0], timeout=10)
        replica_b_after_s = time.monotonic() - done
    print(f"replica B routed the published model {replica_b_after_s:.2f}s after Publish")
    return Published(model, answers, replica_b_after_s)


def assert_same_answers(
    old: list[diagnosis_service_pb2.DiagnoseResponse],
    new: list[diagnosis_service_pb2.DiagnoseResponse],
) -> None:
    for before, after in zip(old, new, strict=True):
        assert after.model_name == "trainer-shapes"
        assert after.top_label == before.top_label
        assert [s.label for s in after.scores] == [s.label for s in before.scores]
        for old_score, new_score in zip(before.scores, after.scores, strict=True):
            assert new_score.score == pytest.approx(old_score.score, abs=1e-4)


def test_a_model_published_through_a_gateway_is_diagnosed_through_it_at_once(
    stack: Stack, published: Published
) -> None:
    with stack.channel() as channel:
        info = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel).GetModelInfo(
            diagnosis_service_pb2.GetModelInfoRequest(disease="shapes"), timeout=30
        )
        models = list_models(channel)
    assert published.model.disease == "shapes"
    assert published.model.model_name == "trainer-shapes"
    assert list(published.model.labels) == list(DEMO_LABELS)
    for answer in published.answers:
        assert answer.model_name == "trainer-shapes"
        assert sorted(score.label for score in answer.scores) == sorted(DEMO_LABELS)
        assert answer.top_label in DEMO_LABELS
    assert list(info.model.labels) == list(DEMO_LABELS)
    assert stack.job.endswith("/" + info.model.model_version)
    assert "trainer" not in models
    assert models["shapes"].available
    assert models["shapes"].kind == model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER
    assert list(models["shapes"].model.labels) == list(DEMO_LABELS)


def test_another_gateway_replica_routes_it_within_one_poll_period(
    stack: Stack, published: Published
) -> None:
    assert published.replica_b_after_s <= POLL_S + POLL_SLACK_S
    with stack.channel(1) as channel:
        answers = [diagnose(channel, "shapes", probe) for probe in PROBES]
    assert_same_answers(published.answers, answers)
    # What a gateway learns from the trainer is not saved: the trainer is its source.
    for start_number in range(1, stack.starts + 1):
        assert not (stack.state_dir(start_number) / "routes.json").exists()


def test_a_restarted_gateway_learns_the_models_from_the_trainer_without_a_state_file(
    stack: Stack, published: Published
) -> None:
    stack.restart_gateway(0)
    fresh = stack.state_dir(stack.starts)
    assert not (fresh / "routes.json").exists()
    with stack.channel(0) as channel:
        # Its first reading of the trainer happens before it reports SERVING: no wait.
        answers = [diagnose(channel, "shapes", probe) for probe in PROBES]
    assert_same_answers(published.answers, answers)


def test_while_the_trainer_restarts_the_routes_stay_and_answer_again_after(
    stack: Stack, published: Published
) -> None:
    assert stack.trainer is not None
    assert stack.trainer.terminate() == 0, stack.trainer.log()
    time.sleep(4 * POLL_S)  # several polls fail meanwhile
    with stack.channel(0) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            diagnose(channel, "shapes", PROBES[0])
        models = list_models(channel)
    error: grpc.Call = caught.value  # type: ignore[assignment]
    # Still routed (not NOT_FOUND): the call fails as any call to an unreachable service.
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert "shapes" in (error.details() or "")
    assert "shapes" in models and not models["shapes"].available
    # Logged once when the trainer went away, not once per period.
    for gateway in stack.gateways:
        assert gateway.log().count("cannot read the trainer's published models") == 1

    stack.start_trainer()
    for replica in (0, 1):
        with stack.channel(replica) as channel:
            diagnose_until_routed(channel, "shapes", PROBES[0], timeout=10)
            answers = [diagnose(channel, "shapes", probe) for probe in PROBES]
        assert_same_answers(published.answers, answers)
    deadline = time.monotonic() + 10
    while any("can be read again" not in g.log() for g in stack.gateways):
        assert time.monotonic() < deadline, [g.log() for g in stack.gateways]
        time.sleep(0.1)


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
    # Refused by the gateway before the trainer was asked.
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "skin" in (error.details() or "")
    assert skin.model_name == toy_answer.model_name != "trainer-skin"
    assert models["skin"].model.model_name == toy_answer.model_name
    assert project.published_disease != "skin"
    missing: grpc.Call = not_published.value  # type: ignore[assignment]
    assert missing.code() == grpc.StatusCode.NOT_FOUND
