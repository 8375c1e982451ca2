"""The teach websockets against the real ASGI app: who may connect, and what the sockets refuse."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from web.accounts.models import User
from web.config.asgi import application
from web.teach.models import TeachProject
from web.tests.postgres import free_port

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost:8000")
HOST = (b"host", b"localhost:8000")


@pytest.fixture(autouse=True)
def gateway_down(settings: Any) -> None:
    """Nothing listens at the gateway's address: these tests never reach the trainer."""
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"


def cookie_of(client: Client) -> tuple[bytes, bytes]:
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def socket(path: str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=[HOST, *headers])


@pytest.mark.parametrize("kind", ["training", "predict"])
async def test_an_anonymous_socket_is_closed_4401_without_being_accepted(
    kind: str, alice: User
) -> None:
    project = await TeachProject.objects.acreate(
        owner=alice, trainer_name="projects/0123456789ab", display_name="G", labels=["a", "b"]
    )
    communicator = socket(f"/ws/teach/{project.pk}/{kind}/", ORIGIN)
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4401)


@pytest.mark.parametrize("kind", ["training", "predict"])
async def test_another_users_project_is_closed_4404(
    kind: str, alice: User, client_bob: Client
) -> None:
    project = await TeachProject.objects.acreate(
        owner=alice, trainer_name="projects/0123456789ab", display_name="G", labels=["a", "b"]
    )
    communicator = socket(f"/ws/teach/{project.pk}/{kind}/", ORIGIN, cookie_of(client_bob))
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4404)


async def test_a_foreign_origin_is_refused_even_for_the_owner(
    alice: User, client_alice: Client
) -> None:
    project = await TeachProject.objects.acreate(
        owner=alice, trainer_name="projects/0123456789ab", display_name="G", labels=["a", "b"]
    )
    path = f"/ws/teach/{project.pk}/training/"
    evil = socket(path, (b"origin", b"https://evil.example"), cookie_of(client_alice))
    connected, _ = await evil.connect()
    assert not connected
    own = socket(path, ORIGIN, cookie_of(client_alice))
    connected, _ = await own.connect()
    assert connected
    await own.disconnect()


async def test_the_training_socket_says_no_job_and_refuses_bad_settings_and_commands(
    alice: User, client_alice: Client
) -> None:
    project = await TeachProject.objects.acreate(
        owner=alice, trainer_name="projects/0123456789ab", display_name="G", labels=["a", "b"]
    )
    communicator = socket(f"/ws/teach/{project.pk}/training/", ORIGIN, cookie_of(client_alice))
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"type": "job", "job": None}
    await communicator.send_json_to({"action": "train", "settings": {"epochs": 0}})
    error = (await communicator.receive_json_from())["error"]
    assert error["code"] == "INVALID_SETTINGS" and "epochs" in error["fields"]
    await communicator.send_json_to({"action": "dance"})
    assert (await communicator.receive_json_from())["error"]["code"] == "UNKNOWN_ACTION"
    await communicator.send_json_to({"action": "cancel"})
    assert (await communicator.receive_json_from())["error"]["code"] == "NO_JOB"
    await communicator.send_to(text_data="x" * 20_000)
    assert (await communicator.receive_json_from())["error"]["code"] == "MESSAGE_TOO_LARGE"
    assert (await communicator.receive_output())["code"] == 1009
    await communicator.disconnect()


async def test_a_valid_training_with_the_trainer_down_answers_an_error_to_the_sender(
    alice: User, client_alice: Client
) -> None:
    project = await TeachProject.objects.acreate(
        owner=alice, trainer_name="projects/0123456789ab", display_name="G", labels=["a", "b"]
    )
    communicator = socket(f"/ws/teach/{project.pk}/training/", ORIGIN, cookie_of(client_alice))
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    await communicator.send_json_to({"action": "train", "settings": {}})
    error = (await communicator.receive_json_from(timeout=10))["error"]
    assert error["code"] == "UNAVAILABLE" and error["http_status"] == 503
    await communicator.disconnect()
