"""The channel layer on a real redis-server: groups across layers, and the training relay."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from django.test import Client

from tests.support.processes import Process
from tests.support.redis import redis_server
from web.accounts.models import User
from web.teach.relay import stop_relays
from web.tests.test_teach_e2e import (
    TRAIN,
    create_project_with_examples,
    socket,
    trainer_stack,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.slow
REDIS_LAYER = "channels_redis.core.RedisChannelLayer"  # what settings.py picks with REDIS_URL


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Runs a throwaway redis-server on a free loopback port; stops it, leaving no process."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


async def test_a_group_send_on_one_layer_reaches_a_channel_of_another(
    redis_url: str,
) -> None:
    here, there = RedisChannelLayer(hosts=[redis_url]), RedisChannelLayer(hosts=[redis_url])
    try:
        channel = await here.new_channel()
        await here.group_add("teach-training-test", channel)
        await there.group_send("teach-training-test", {"type": "training.event", "job": {"x": 1}})
        received = await asyncio.wait_for(here.receive(channel), timeout=5)
        assert received == {"type": "training.event", "job": {"x": 1}}
        await here.group_discard("teach-training-test", channel)
        await there.group_send("teach-training-test", {"type": "training.event", "job": None})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(here.receive(channel), timeout=0.5)
    finally:
        await here.flush()
        await here.close_pools()
        await there.close_pools()


@pytest.mark.django_db(transaction=True)
def test_training_events_reach_every_follower_through_redis(
    redis_url: str,
    trainer_stack: tuple[Process, Process],  # noqa: F811
    settings: Any,
    client_alice: Client,
    alice: User,
) -> None:
    settings.GATEWAY_ADDR = trainer_stack[0].address
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    project = create_project_with_examples(client_alice)

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        # A layer of its own stands for another web process following the same project.
        elsewhere = RedisChannelLayer(hosts=[redis_url])
        channel = await elsewhere.new_channel()
        await elsewhere.group_add(project.group_name, channel)
        tab = socket(f"/ws/teach/{project.pk}/training/", client_alice)
        assert (await tab.connect())[0]
        assert (await tab.receive_json_from(timeout=10))["job"] is None
        await tab.send_json_to({"action": "train", "settings": TRAIN})
        in_tab: list[dict[str, Any]] = []
        while not in_tab or in_tab[-1]["active"]:
            in_tab.append((await tab.receive_json_from(timeout=120))["job"])
        in_other: list[dict[str, Any]] = []
        while not in_other or in_other[-1]["active"]:
            message = await asyncio.wait_for(elsewhere.receive(channel), timeout=10)
            assert message["type"] == "training.event"
            in_other.append(message["job"])
        await tab.disconnect()
        await stop_relays()
        await elsewhere.flush()
        await elsewhere.close_pools()
        return in_tab, in_other

    in_tab, in_other = asyncio.run(run())
    assert in_tab == in_other
    assert in_tab[-1]["state"] == "succeeded"
    assert in_tab[-1]["metrics"]["epoch"] == TRAIN["epochs"]
