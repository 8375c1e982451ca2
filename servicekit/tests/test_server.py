"""The bootstrap: health, reflection, request ids, the error table, TLS, metrics, draining."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc

from servicekit import errors
from servicekit.server import Server, ServiceBinding
from servicekit.settings import ServerSettings
from servicekit.tests.certs import make_certs

SERVICE = "medimg.v1.DiagnosisService"


class ScriptedServicer(pb_grpc.DiagnosisServiceServicer):
    """Answers, raises or waits according to the request's image bytes."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.load_gate = asyncio.Event()
        self.load_gate.set()
        self.stopped = False

    async def start(self) -> None:
        await self.load_gate.wait()

    async def stop(self) -> None:
        self.stopped = True

    async def Diagnose(self, request: pb.DiagnoseRequest, context: Any) -> pb.DiagnoseResponse:
        if request.image == b"bad":
            raise errors.InvalidImage("the file is not a readable image", reason="IMAGE_UNREADABLE")
        if request.image == b"full":
            raise errors.QueueFull("queue full")
        if request.image == b"crash":
            raise RuntimeError("secret /etc/path detail")
        if request.image == b"slow":
            self.started.set()
            await self.release.wait()
        return pb.DiagnoseResponse(disease=request.disease, top_label="ok", top_score=1.0)

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: Any
    ) -> pb.GetModelInfoResponse:
        return pb.GetModelInfoResponse()


def binding(servicer: ScriptedServicer) -> ServiceBinding:
    return ServiceBinding(
        SERVICE, lambda server: pb_grpc.add_DiagnosisServiceServicer_to_server(servicer, server)
    )


def settings(**env: str) -> ServerSettings:
    return ServerSettings.from_env(
        "TEST_", default_port=0, env={f"TEST_{k}": v for k, v in env.items()}
    )


@pytest.fixture
async def running() -> AsyncIterator[tuple[Server, ScriptedServicer, grpc.aio.Channel]]:
    servicer = ScriptedServicer()
    server = Server(settings(), [binding(servicer)], lifecycle=servicer)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield server, servicer, channel
    await server.stop(0)


async def health_of(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(response.status)


async def test_health_is_serving_for_the_server_and_each_service(running: Any) -> None:
    _, _, channel = running
    assert await health_of(channel) == health_pb2.HealthCheckResponse.SERVING
    assert await health_of(channel, SERVICE) == health_pb2.HealthCheckResponse.SERVING


async def test_health_is_not_serving_until_the_model_is_loaded() -> None:
    servicer = ScriptedServicer()
    servicer.load_gate.clear()
    server = Server(settings(), [binding(servicer)], lifecycle=servicer)
    start = asyncio.ensure_future(server.start())
    for _ in range(100):
        if server.port:
            break
        await asyncio.sleep(0.01)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        assert await health_of(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        servicer.load_gate.set()
        await start
        assert await health_of(channel) == health_pb2.HealthCheckResponse.SERVING
    await server.stop(0)


async def test_reflection_lists_the_services(running: Any) -> None:
    _, _, channel = running
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request])):
        names = {s.name for s in response.list_services_response.service}
        break
    assert {SERVICE, "grpc.health.v1.Health"} <= names


async def test_the_callers_request_id_comes_back(running: Any) -> None:
    _, _, channel = running
    call = pb_grpc.DiagnosisServiceStub(channel).Diagnose(
        pb.DiagnoseRequest(image=b"x"), metadata=(("x-request-id", "abc-123"),)
    )
    await call
    assert ("x-request-id", "abc-123") in tuple(await call.trailing_metadata())


async def test_a_request_id_is_made_when_the_caller_sends_none(running: Any) -> None:
    _, _, channel = running
    call = pb_grpc.DiagnosisServiceStub(channel).Diagnose(pb.DiagnoseRequest(image=b"x"))
    await call
    ids = [v for k, v in await call.trailing_metadata() if k == "x-request-id"]
    assert len(ids) == 1 and len(ids[0]) == 32


@pytest.mark.parametrize(
    ("image", "code", "reason"),
    [
        (b"bad", grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_UNREADABLE"),
        (b"full", grpc.StatusCode.RESOURCE_EXHAUSTED, "QUEUE_FULL"),
    ],
)
async def test_domain_errors_map_to_their_status_with_a_reason(
    running: Any, image: bytes, code: grpc.StatusCode, reason: str
) -> None:
    _, _, channel = running
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.DiagnosisServiceStub(channel).Diagnose(pb.DiagnoseRequest(image=image))
    assert caught.value.code() == code
    status = rpc_status.from_call(caught.value)
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (info.reason, info.domain) == (reason, "medimg")


async def test_an_unexpected_error_is_internal_and_says_nothing_more(running: Any) -> None:
    _, _, channel = running
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.DiagnosisServiceStub(channel).Diagnose(pb.DiagnoseRequest(image=b"crash"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"


async def test_stop_lets_in_flight_calls_finish_and_refuses_new_ones(running: Any) -> None:
    server, servicer, channel = running
    stub = pb_grpc.DiagnosisServiceStub(channel)
    in_flight = asyncio.ensure_future(stub.Diagnose(pb.DiagnoseRequest(image=b"slow")))
    await servicer.started.wait()
    stopping = asyncio.ensure_future(server.stop(grace=5, drain_delay=0.5))
    await asyncio.sleep(0.1)
    assert await health_of(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    await asyncio.sleep(0.6)  # past the drain delay: new calls are refused now
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Diagnose(pb.DiagnoseRequest(image=b"x"), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    servicer.release.set()
    assert (await in_flight).top_label == "ok"
    await stopping
    assert servicer.stopped


async def test_a_taken_port_is_reported_plainly() -> None:
    first = Server(settings(), [])
    port = await first.start()
    second = Server(settings(PORT=str(port)), [])
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
        await second.start()
    await first.stop(0)


async def test_it_serves_tls_and_requires_client_certificates_with_mtls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    server = Server(
        settings(
            TLS_CERT_FILE=str(certs.server_cert),
            TLS_KEY_FILE=str(certs.server_key),
            TLS_CLIENT_CA_FILE=str(certs.ca),
        ),
        [binding(ScriptedServicer())],
    )
    port = await server.start()
    ca = certs.ca.read_bytes()
    with_cert = grpc.ssl_channel_credentials(
        ca, certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    async with grpc.aio.secure_channel(f"localhost:{port}", with_cert) as channel:
        response = await pb_grpc.DiagnosisServiceStub(channel).Diagnose(
            pb.DiagnoseRequest(image=b"x"), timeout=5
        )
        assert response.top_label == "ok"
    without_cert = grpc.ssl_channel_credentials(ca)
    async with grpc.aio.secure_channel(f"localhost:{port}", without_cert) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.DiagnosisServiceStub(channel).Diagnose(
                pb.DiagnoseRequest(image=b"x"), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    await server.stop(0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_metrics_count_calls_by_code() -> None:
    servicer = ScriptedServicer()
    server = Server(settings(METRICS_PORT=str(free_port())), [binding(servicer)])
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.DiagnosisServiceStub(channel)
        await stub.Diagnose(pb.DiagnoseRequest(image=b"x"))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Diagnose(pb.DiagnoseRequest(image=b"bad"))
    assert server.metrics_port
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    text = (await asyncio.to_thread(urllib.request.urlopen, url, timeout=5)).read().decode()
    method = "/medimg.v1.DiagnosisService/Diagnose"
    assert (
        f'medimg_grpc_errors_total{{code="INVALID_ARGUMENT",component="test",method="{method}"}}'
        in text
    )
    assert "medimg_grpc_call_duration_seconds_bucket" in text
    await server.stop(0)
