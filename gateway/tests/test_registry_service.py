"""medimg.v1.ModelRegistry in-process: listing, runtime registration, the admin token."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_info_pb2,
    model_registry_pb2,
    model_registry_pb2_grpc,
)

from gateway.registry import Route, RouteKind
from gateway.router import Router, check_admin
from gateway.tests.doubles import (
    FakeDiagnosis,
    FakeSeries,
    closed_port,
    gateway,
    gateway_settings,
    upstream,
)
from servicekit.errors import Unauthenticated

IMAGE = model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER
SERIES = model_info_pb2.MODEL_KIND_SERIES_ANALYZER
ADMIN = (("authorization", "Bearer let-me-in"),)


def register(disease: str, *addresses: str) -> model_registry_pb2.RegisterModelRequest:
    return model_registry_pb2.RegisterModelRequest(
        disease=disease, kind=IMAGE, addresses=list(addresses)
    )


async def test_it_lists_every_route_sorted_with_its_model_and_availability(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{closed_port()}"
    async with upstream(FakeDiagnosis("alice")) as a, upstream(FakeSeries()) as m:
        routes = f"skin=image@{a},{dead};mri=series@{m};lung=image@{dead}"
        async with gateway(gateway_settings(tmp_path, ROUTES=routes)) as channel:
            stub = model_registry_pb2_grpc.ModelRegistryStub(channel)
            models = (await stub.ListModels(model_registry_pb2.ListModelsRequest())).models
    assert [m.disease for m in models] == ["lung", "mri", "skin"]
    lung, mri, skin = models
    assert not lung.available and lung.unavailable_reason.startswith("UNAVAILABLE")
    assert mri.available and mri.kind == SERIES and mri.model.model_name == "fake-series"
    assert skin.available and skin.kind == IMAGE and skin.model.model_name == "alice"
    assert skin.replica_count == 2


async def test_it_lists_page_by_page_and_asks_only_the_pages_services(tmp_path: Path) -> None:
    alice = FakeDiagnosis("alice")
    async with upstream(alice) as a:
        diseases = ["acne", "lung", "retina", "skin", "wound"]
        routes = ";".join(f"{d}=image@{a}" for d in diseases)
        async with gateway(gateway_settings(tmp_path, ROUTES=routes)) as channel:
            stub = model_registry_pb2_grpc.ModelRegistryStub(channel)
            pages, token = [], ""
            while True:
                request = model_registry_pb2.ListModelsRequest(page_size=2, page_token=token)
                response = await stub.ListModels(request)
                pages.append([m.disease for m in response.models])
                if len(pages) == 1:
                    first_page_calls = alice.model_info_calls
                token = response.next_page_token
                if not token:
                    break
            with pytest.raises(grpc.aio.AioRpcError) as bad_token:
                await stub.ListModels(model_registry_pb2.ListModelsRequest(page_token="nope"))
            with pytest.raises(grpc.aio.AioRpcError) as bad_size:
                await stub.ListModels(model_registry_pb2.ListModelsRequest(page_size=-1))
            everything = await stub.ListModels(model_registry_pb2.ListModelsRequest())
    assert pages == [["acne", "lung"], ["retina", "skin"], ["wound"]]
    assert first_page_calls == 2  # one page's services are asked, not every route's
    assert bad_token.value.code() == bad_size.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [m.disease for m in everything.models] == diseases
    assert everything.next_page_token == ""


async def test_it_asks_each_service_once_per_ttl(tmp_path: Path) -> None:
    alice = FakeDiagnosis("alice")
    async with upstream(alice) as a:
        settings = gateway_settings(tmp_path, ROUTES=f"skin=image@{a}")
        async with gateway(settings) as channel:
            stub = model_registry_pb2_grpc.ModelRegistryStub(channel)
            for _ in range(3):
                await stub.ListModels(model_registry_pb2.ListModelsRequest())
    assert alice.model_info_calls == 1


async def test_it_asks_again_once_the_ttl_expired(tmp_path: Path) -> None:
    alice = FakeDiagnosis("alice")
    async with upstream(alice) as a:
        router = Router(gateway_settings(tmp_path, ROUTES=f"skin=image@{a}"))
        now = [0.0]
        router.catalog._clock = lambda: now[0]  # the TTL is measured on this clock
        route = Route("skin", RouteKind.IMAGE, (a,))
        await router.catalog.describe(route)
        now[0] = 9.0
        await router.catalog.describe(route)
        now[0] = 10.5
        described = await router.catalog.describe(route)
        await router.stop()
    assert alice.model_info_calls == 2
    assert described.available


async def test_a_registered_model_is_routed_at_once_and_after_a_restart(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path)
    async with upstream(FakeDiagnosis("derm-v2")) as a:
        async with gateway(settings) as channel:
            registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
            registered = (await registry.RegisterModel(register("derm", a))).model
            diagnosis = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            answer = await diagnosis.Diagnose(diagnosis_service_pb2.DiagnoseRequest(disease="derm"))
        assert registered.available and registered.model.model_name == "derm-v2"
        assert answer.model_name == "derm-v2"
        async with gateway(settings) as channel:
            diagnosis = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            again = await diagnosis.Diagnose(diagnosis_service_pb2.DiagnoseRequest(disease="derm"))
    assert again.model_name == "derm-v2"


async def test_a_registered_model_that_does_not_answer_is_listed_unavailable(
    tmp_path: Path,
) -> None:
    async with gateway(gateway_settings(tmp_path)) as channel:
        registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
        registered = await registry.RegisterModel(register("derm", f"127.0.0.1:{closed_port()}"))
    assert not registered.model.available
    assert registered.model.replica_count == 1


async def test_an_unregistered_model_is_no_longer_routed(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as channel:
        registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
        await registry.RegisterModel(register("derm", f"127.0.0.1:{closed_port()}"))
        await registry.UnregisterModel(model_registry_pb2.UnregisterModelRequest(disease="derm"))
        diagnosis = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await diagnosis.Diagnose(diagnosis_service_pb2.DiagnoseRequest(disease="derm"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_it_refuses_to_replace_a_configured_route(tmp_path: Path) -> None:
    async with upstream(FakeDiagnosis("skin-v1")) as a, upstream(FakeDiagnosis("impostor")) as b:
        settings = gateway_settings(tmp_path, ROUTES=f"skin=image@{a}")
        async with gateway(settings) as channel:
            registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await registry.RegisterModel(register("skin", b))
            diagnosis = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            answer = await diagnosis.Diagnose(diagnosis_service_pb2.DiagnoseRequest(disease="skin"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'skin' is routed by the gateway's configuration" in (caught.value.details() or "")
    assert answer.model_name == "skin-v1"
    assert not (tmp_path / "routes.json").exists()


async def test_a_runtime_route_can_be_registered_again_with_new_addresses(tmp_path: Path) -> None:
    async with (
        upstream(FakeDiagnosis("v1")) as a,
        upstream(FakeDiagnosis("v2")) as b,
        gateway(gateway_settings(tmp_path)) as channel,
    ):
        registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
        await registry.RegisterModel(register("derm", a))
        replaced = (await registry.RegisterModel(register("derm", b))).model
    assert replaced.available and replaced.model.model_name == "v2"


async def test_it_refuses_to_unregister_a_configured_route(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"skin=image@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as configured:
            await registry.UnregisterModel(
                model_registry_pb2.UnregisterModelRequest(disease="skin")
            )
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await registry.UnregisterModel(
                model_registry_pb2.UnregisterModelRequest(disease="lung")
            )
    assert configured.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "request_",
    [
        register("Derm", "127.0.0.1:1"),
        register("derm"),
        register("derm", "not an address"),
        model_registry_pb2.RegisterModelRequest(disease="derm", addresses=["127.0.0.1:1"]),
    ],
)
async def test_it_refuses_a_malformed_registration(
    tmp_path: Path, request_: model_registry_pb2.RegisterModelRequest
) -> None:
    async with gateway(gateway_settings(tmp_path)) as channel:
        registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await registry.RegisterModel(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not (tmp_path / "routes.json").exists()


async def test_it_requires_the_admin_token_to_change_routes(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, ADMIN_TOKEN="let-me-in")
    dead = f"127.0.0.1:{closed_port()}"
    async with gateway(settings) as channel:
        registry = model_registry_pb2_grpc.ModelRegistryStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await registry.RegisterModel(register("derm", dead))
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await registry.RegisterModel(
                register("derm", dead), metadata=(("authorization", "Bearer guess"),)
            )
        with pytest.raises(grpc.aio.AioRpcError) as unregister:
            await registry.UnregisterModel(model_registry_pb2.UnregisterModelRequest(disease="x"))
        await registry.RegisterModel(register("derm", dead), metadata=ADMIN)
        listed = await registry.ListModels(model_registry_pb2.ListModelsRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert unregister.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [m.disease for m in listed.models] == ["derm"]


def test_no_admin_token_configured_lets_changes_through() -> None:
    check_admin(None, None)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic let-me-in", "Bearer wrong"])
def test_it_refuses_a_missing_or_wrong_admin_token(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        check_admin("let-me-in", header)


def test_it_accepts_the_admin_token_whatever_the_scheme_case() -> None:
    check_admin("let-me-in", "bearer let-me-in")
