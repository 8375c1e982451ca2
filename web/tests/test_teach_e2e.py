"""The teach path end to end: the real ASGI app, the real gateway and trainer as processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.support.processes import Process, free_port, start, start_trainer, wait_until_serving
from trainer_service.demo_images import demo_images
from web.accounts.models import User
from web.config.asgi import application
from web.gateway_client import get_gateway
from web.teach.models import TeachProject
from web.teach.relay import stop_relays

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ORIGIN = (b"origin", b"http://localhost:8000")
HOST = (b"host", b"localhost:8000")
LABELS = ("circle", "square")
TRAIN = {"epochs": 4, "batch_size": 8, "learning_rate": 0.01, "validation_split": 0.25, "seed": 7}


def start_trainer_stack(tmp: Any) -> tuple[Process, Process]:
    """Starts the gateway (with a `trainer` route) and the trainer, which publishes to it."""
    trainer_port = free_port()
    gateway = start(
        "gateway",
        "gateway",
        "GATEWAY_",
        env={
            "GATEWAY_ROUTES": f"trainer=trainer@127.0.0.1:{trainer_port}",
            "GATEWAY_STATE_DIR": str(tmp.mktemp("gateway")),
        },
    )
    trainer = start_trainer(port=trainer_port, data_dir=tmp.mktemp("trainer"))
    try:
        wait_until_serving(gateway)
        wait_until_serving(trainer, timeout=90)
    except BaseException:
        trainer.terminate()
        gateway.terminate()
        raise
    return gateway, trainer


@pytest.fixture(scope="module")
def trainer_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, Process]]:
    gateway, trainer = start_trainer_stack(tmp_path_factory)
    try:
        yield gateway, trainer
    finally:
        trainer.terminate()
        gateway.terminate()


@pytest.fixture
def gateway_addr(trainer_stack: tuple[Process, Process], settings: Any) -> str:
    settings.GATEWAY_ADDR = trainer_stack[0].address
    return trainer_stack[0].address


def cookie_of(client: Client) -> tuple[bytes, bytes]:
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def socket(path: str, client: Client) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=[HOST, ORIGIN, cookie_of(client)])


def create_project_with_examples(client: Client, per_label: int = 12) -> TeachProject:
    """Creates a project through the page and uploads generated examples of each label."""
    response = client.post("/teach/", {"display_name": "Shapes", "labels": "\n".join(LABELS)})
    assert response.status_code == 303, response.content.decode()[:2000]
    project = TeachProject.objects.get()
    for index, label in enumerate(LABELS):
        files = [
            SimpleUploadedFile(f"{i}.jpg", image, content_type="image/jpeg")
            for i, image in enumerate(demo_images(index, per_label, seed=3))
        ]
        answer = client.post(f"/teach/{project.pk}/examples/", {"label": label, "images": files})
        assert answer.status_code == 201, answer.content
        assert answer.json()["counts"][label] == per_label
    return project


async def events_until_done(
    communicator: WebsocketCommunicator, timeout_s: float = 120
) -> list[dict[str, Any]]:
    """Returns the job events the socket receives until a terminal one."""
    events: list[dict[str, Any]] = []
    while True:
        message = await communicator.receive_json_from(timeout=timeout_s)
        assert message["type"] == "job", message
        events.append(message["job"])
        if message["job"] and not message["job"]["active"]:
            return events


async def train_and_follow(project: TeachProject, client: Client) -> list[dict[str, Any]]:
    """Trains over one socket while a second one (another tab) follows; both see every event."""
    path = f"/ws/teach/{project.pk}/training/"
    first, second = socket(path, client), socket(path, client)
    assert (await first.connect())[0] and (await second.connect())[0]
    assert await first.receive_json_from() == {"type": "job", "job": None}
    assert await second.receive_json_from() == {"type": "job", "job": None}
    await first.send_json_to({"action": "train", "settings": TRAIN})
    seen_first, seen_second = await asyncio.gather(
        events_until_done(first), events_until_done(second)
    )
    await first.disconnect()
    await second.disconnect()
    assert seen_first == seen_second
    return seen_first


def test_capture_train_test_and_publish_through_the_real_trainer(
    gateway_addr: str, client_alice: Client, alice: User, settings: Any
) -> None:
    project = create_project_with_examples(client_alice)
    settings.WEB_TEACH_MAX_FRAMES_PER_SECOND = 100

    events = asyncio.run(train_and_follow(project, client_alice))
    assert events[0]["state"] in ("queued", "running")
    epochs = [e["metrics"]["epoch"] for e in events if e["metrics"]]
    assert epochs == sorted(epochs) and epochs[-1] == TRAIN["epochs"]
    last = events[-1]
    assert last["state"] == "succeeded", last
    assert set(last["metrics"]) >= {"loss", "accuracy", "validation_accuracy", "eta_seconds"}
    project.refresh_from_db()
    assert project.latest_job == last["name"]

    # A page opened later gets the job's final state on connect.
    async def reconnect() -> dict[str, Any]:
        communicator = socket(f"/ws/teach/{project.pk}/training/", client_alice)
        assert (await communicator.connect())[0]
        message: dict[str, Any] = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return message

    assert asyncio.run(reconnect())["job"]["state"] == "succeeded"

    predictions = asyncio.run(predict_live(project, client_alice, settings))
    assert {p["top_label"] for p in predictions} <= set(LABELS)
    assert [s["label"] for s in predictions[0]["scores"]] == list(LABELS)

    response = client_alice.post(f"/teach/{project.pk}/publish/", {"disease": "shapes"})
    assert response.status_code == 303, response.content.decode()[:2000]
    page = client_alice.get(f"/teach/{project.pk}/test/").content.decode()
    assert "Published as <strong>shapes</strong>" in page and "disease=shapes" in page
    diagnosis = get_gateway().diagnose(image=demo_images(0, 1, seed=99)[0], disease="shapes")
    assert {s.label for s in diagnosis.scores} == set(LABELS)

    refused = client_alice.post(f"/teach/{project.pk}/publish/", {"disease": "trainer"})
    assert refused.status_code in (404, 409), refused.status_code
    asyncio.run(stop_relays())


async def predict_live(
    project: TeachProject, client: Client, settings: Any
) -> list[dict[str, Any]]:
    """Streams frames; checks one in flight, the size cap (1009) and that others keep working."""
    path = f"/ws/teach/{project.pk}/predict/"
    live = socket(path, client)
    assert (await live.connect())[0]
    assert (await live.receive_json_from(timeout=10))["type"] == "ready"
    frames = demo_images(0, 3, seed=11) + demo_images(1, 3, seed=11)
    for frame in frames:  # sent at once: one goes, the rest replace each other while waiting
        await live.send_to(bytes_data=frame)
    # The first frame, then only the newest of those that waited, and nothing more.
    predictions = [await live.receive_json_from(timeout=30) for _ in range(2)]
    assert await live.receive_nothing(timeout=2)
    assert all(p["type"] == "prediction" for p in predictions)
    assert predictions[-1]["dropped"]["replaced"] == len(frames) - 2
    assert predictions[-1]["top_label"] == "square"

    # An oversized frame: an error, then close 1009; another socket is still served.
    oversized = socket(path, client)
    assert (await oversized.connect())[0]
    await oversized.receive_json_from(timeout=10)
    await oversized.send_to(bytes_data=b"\xff\xd8\xff" + b"\0" * (1024 * 1024))
    error = await oversized.receive_json_from(timeout=10)
    assert error["error"]["code"] == "FRAME_TOO_LARGE"
    assert (await oversized.receive_output(timeout=10))["code"] == 1009
    await live.send_to(bytes_data=frames[0])
    after = await live.receive_json_from(timeout=30)
    assert after["type"] == "prediction" and after["top_label"] == "circle"
    await live.disconnect()
    await oversized.wait()

    # Above WEB_TEACH_MAX_FRAMES_PER_SECOND frames are dropped and counted.
    settings.WEB_TEACH_MAX_FRAMES_PER_SECOND = 1
    capped = socket(path, client)
    assert (await capped.connect())[0]
    await capped.receive_json_from(timeout=10)
    for frame in frames[:3]:
        await capped.send_to(bytes_data=frame)
    await capped.receive_json_from(timeout=30)
    await asyncio.sleep(1.1)
    await capped.send_to(bytes_data=frames[0])
    assert (await capped.receive_json_from(timeout=30))["dropped"]["over_rate"] == 2
    await capped.disconnect()
    return predictions


def test_a_project_the_trainer_does_not_know_closes_the_predict_socket_4404(
    gateway_addr: str, client_alice: Client, alice: User
) -> None:
    project = TeachProject.objects.create(
        owner=alice,
        trainer_name="projects/000000000000",
        display_name="none",
        labels=list(LABELS),
    )

    async def run() -> dict[str, Any]:
        communicator = socket(f"/ws/teach/{project.pk}/predict/", client_alice)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=10)
        await communicator.send_to(bytes_data=demo_images(0, 1, seed=1)[0])
        message: dict[str, Any] = await communicator.receive_json_from(timeout=10)
        output = await communicator.receive_output(timeout=10)
        assert output["type"] == "websocket.close" and output["code"] == 4404
        return message

    assert asyncio.run(run())["error"]["code"] == "NOT_FOUND"
