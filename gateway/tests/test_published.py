"""The trainer's published models as routes: the merge, the table's learned layer, the poller."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import grpc
import grpc.aio
import pytest
from medimg.v1 import (
    model_info_pb2,
    model_registry_pb2,
    model_registry_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
)

from gateway.errors import RouteLearned
from gateway.published import published_routes
from gateway.registry import Route, RouteKind, RouteTable, StateStore
from gateway.router import Router
from gateway.tests.doubles import FakeTrainer, closed_port, gateway, gateway_settings, upstream
from gateway.tests.test_proxy import error_reason

TRAINER = Route("trainer", RouteKind.TRAINER, ("127.0.0.1:50063",))
SKIN = Route("skin", RouteKind.IMAGE, ("127.0.0.1:50061",))
POLLER_LOG = "gateway.published"


def learned(disease: str, trainer: Route = TRAINER) -> Route:
    return Route(disease, RouteKind.IMAGE, trainer.addresses)


def test_published_diseases_become_image_routes_to_the_trainer_but_never_configured_ones() -> None:
    merged = published_routes(
        ["cups", "skin", "Bad Name", "mugs"], TRAINER, {"skin", "trainer"}.__contains__
    )
    assert merged.routes == {"cups": learned("cups"), "mugs": learned("mugs")}
    assert merged.configured == ("skin",)
    assert merged.invalid == ("Bad Name",)


def test_the_learned_layer_drops_what_is_gone_and_never_replaces_configured_routes(
    tmp_path: Path,
) -> None:
    state = tmp_path / "routes.json"
    table = RouteTable({"skin": SKIN, "trainer": TRAINER}, StateStore(state))
    table.learn({"cups": learned("cups"), "mugs": learned("mugs"), "skin": learned("skin")})
    assert table.get("skin") == SKIN
    assert table.get("cups") == learned("cups")
    assert table.is_learned("cups") and not table.is_learned("skin")
    assert table.diseases(RouteKind.IMAGE) == ["cups", "mugs", "skin"]
    table.learn({"cups": learned("cups")})
    assert table.get("mugs") is None
    # The trainer is the source of truth of learned routes: nothing is saved.
    assert not state.exists()


def test_a_registered_route_wins_over_a_learned_one_and_learned_ones_cannot_be_unregistered(
    tmp_path: Path,
) -> None:
    table = RouteTable({"trainer": TRAINER}, StateStore(tmp_path / "routes.json"))
    table.learn({"cups": learned("cups")})
    by_hand = Route("cups", RouteKind.IMAGE, ("10.0.0.9:50061",))
    table.register(by_hand)
    assert table.get("cups") == by_hand
    table.unregister("cups")
    assert table.get("cups") == learned("cups")
    with pytest.raises(RouteLearned, match="the trainer lists it"):
        table.unregister("cups")


async def test_the_poller_reads_every_page_and_keeps_routes_while_the_trainer_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    trainer = FakeTrainer(published=["e", "d", "c", "b", "a"], max_page_size=2)
    router = Router(gateway_settings(tmp_path, ROUTES=f"trainer=trainer@127.0.0.1:{port}"))
    up = {"UP_PORT": str(port)}
    caplog.set_level(logging.INFO, logger=POLLER_LOG)
    try:
        async with upstream(trainer, up):
            assert await router.publications.refresh()
        assert router.table.diseases(RouteKind.IMAGE) == ["a", "b", "c", "d", "e"]
        assert trainer.page_tokens == ["", "2", "4"]

        # Down: every reading fails, the last known routes stay, and one line says so.
        for _ in range(3):
            assert not await router.publications.refresh()
        assert router.table.diseases(RouteKind.IMAGE) == ["a", "b", "c", "d", "e"]
        down = [r for r in caplog.records if "cannot read" in r.getMessage()]
        assert len(down) == 1 and down[0].levelno == logging.WARNING

        # Back, publishing less: the missing ones are dropped.
        async with upstream(FakeTrainer(published=["a", "c"]), up):
            deadline = time.monotonic() + 5
            while not await router.publications.refresh():
                assert time.monotonic() < deadline, "the trainer was not read again"
                await asyncio.sleep(0.05)
        assert router.table.diseases(RouteKind.IMAGE) == ["a", "c"]
        assert [r for r in caplog.records if "can be read again" in r.getMessage()]
        assert len([r for r in caplog.records if "cannot read" in r.getMessage()]) == 1
    finally:
        await router.stop()


async def test_the_gateway_polls_the_trainer_every_period(tmp_path: Path) -> None:
    trainer = FakeTrainer(published=["cups"])
    async with upstream(trainer) as address:
        settings = gateway_settings(
            tmp_path, ROUTES=f"trainer=trainer@{address}", TRAINER_POLL_SECONDS="0.1"
        )
        async with gateway(settings) as channel:
            registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
            # Learned before the gateway served its first call.
            first = await registry.ListModels(model_registry_pb2.ListModelsRequest())
            trainer.published.append("mugs")
            deadline = time.monotonic() + 5
            while True:
                listed = await registry.ListModels(model_registry_pb2.ListModelsRequest())
                if [m.disease for m in listed.models] == ["cups", "mugs"]:
                    break
                assert time.monotonic() < deadline, listed
                await asyncio.sleep(0.05)
    assert [m.disease for m in first.models] == ["cups"]
    assert trainer.calls["ListPublishedModels"] >= 2


async def test_publish_through_the_gateway_is_routed_at_once_and_refused_over_other_routes(
    tmp_path: Path,
) -> None:
    trainer = FakeTrainer()
    async with upstream(trainer) as address:
        routes = f"skin=image@127.0.0.1:{closed_port()};trainer=trainer@{address}"
        # A long period: only the refresh that follows the Publish can explain the route.
        settings = gateway_settings(tmp_path, ROUTES=routes, TRAINER_POLL_SECONDS="3600")
        async with gateway(settings) as channel:
            stub = trainer_service_pb2_grpc.TrainerServiceStub(channel)
            registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
            await stub.Publish(
                trainer_service_pb2.PublishRequest(project="projects/p", disease="cups")
            )
            listed = await registry.ListModels(model_registry_pb2.ListModelsRequest())
            await registry.RegisterModel(
                model_registry_pb2.RegisterModelRequest(
                    disease="mugs",
                    kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
                    addresses=[f"127.0.0.1:{closed_port()}"],
                )
            )
            refusals = []
            for disease in ("skin", "trainer", "mugs"):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Publish(
                        trainer_service_pb2.PublishRequest(project="projects/p", disease=disease)
                    )
                refusals.append(caught.value)
    assert [m.disease for m in listed.models] == ["cups", "skin"]
    for refusal in refusals:
        assert refusal.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(refusal) == "ROUTE_CONFIGURED"
    assert "configuration" in (refusals[0].details() or "")
    assert "RegisterModel" in (refusals[2].details() or "")
    # Refused up front: the trainer saw only the one Publish that went through.
    assert trainer.calls["Publish"] == 1
    assert trainer.published == ["cups"]
    assert not (tmp_path / "routes.json").read_text().count("cups")
