"""Gateway and a service as real processes on loopback: health, routing, failures, draining."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc
from medimg.v1 import model_info_pb2, model_registry_pb2, model_registry_pb2_grpc

from tests.support.images import solid_png
from tests.support.processes import Process, start, start_gateway, wait_until_serving

pytestmark = pytest.mark.slow

RED = solid_png((220, 30, 30))


def start_toy(**env: str) -> Process:
    toy = start("toy", "tests.toy_service", "TOY_", env=env)
    wait_until_serving(toy)
    return toy


@pytest.fixture(scope="module")
def toy() -> Iterator[Process]:
    process = start_toy()
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def gateway(toy: Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start_gateway(f"toy=image@{toy.address}", tmp_path_factory.mktemp("gateway"))
    yield process
    process.terminate()


def diagnose(address: str, disease: str, image: bytes, timeout: float = 10) -> pb.DiagnoseResponse:
    with grpc.insecure_channel(address) as channel:
        return pb_grpc.DiagnosisServiceStub(channel).Diagnose(
            pb.DiagnoseRequest(disease=disease, image=image), timeout=timeout
        )


def register_image_route(gateway_address: str, disease: str, service_address: str) -> None:
    with grpc.insecure_channel(gateway_address) as channel:
        model_registry_pb2_grpc.ModelRegistryStub(channel).RegisterModel(
            model_registry_pb2.RegisterModelRequest(
                disease=disease,
                kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
                addresses=[service_address],
            ),
            timeout=10,
        )


def listed_services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(stub.ServerReflectionInfo(iter([request]), timeout=5))
    return {service.name for service in response.list_services_response.service}


def test_both_processes_report_serving_to_the_standard_health_client(
    toy: Process, gateway: Process
) -> None:
    for process, service in ((toy, "medimg.v1.DiagnosisService"), (gateway, "")):
        with grpc.insecure_channel(process.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_medimg_services(toy: Process, gateway: Process) -> None:
    assert {
        "medimg.v1.DiagnosisService",
        "medimg.v1.SeriesAnalysisService",
        "medimg.v1.ModelRegistry",
    } <= listed_services(gateway.address)
    assert "medimg.v1.DiagnosisService" in listed_services(toy.address)


def test_diagnose_through_the_gateway_answers_from_the_service(
    toy: Process, gateway: Process
) -> None:
    direct = diagnose(toy.address, "toy", RED)
    via_gateway = diagnose(gateway.address, "toy", RED)
    assert via_gateway.top_label == "red"
    assert via_gateway == direct
    assert via_gateway.scores[0].label == "red"


def test_the_request_id_travels_from_the_caller_to_the_service(
    toy: Process, gateway: Process
) -> None:
    with grpc.insecure_channel(gateway.address) as channel:
        pb_grpc.DiagnosisServiceStub(channel).Diagnose(
            pb.DiagnoseRequest(disease="toy", image=RED),
            metadata=(("x-request-id", "e2e-trace-42"),),
            timeout=10,
        )
    deadline = time.monotonic() + 5
    while "e2e-trace-42" not in toy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "e2e-trace-42" in gateway.log()
    assert "e2e-trace-42" in toy.log()


def test_an_unknown_disease_is_not_found(gateway: Process) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        diagnose(gateway.address, "retina", RED)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "retina" in (caught.value.details() or "")


def test_bad_input_is_passed_through_with_its_code(gateway: Process) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        diagnose(gateway.address, "toy", b"not an image")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "the file is not a readable image"


def test_list_models_describes_each_route(gateway: Process) -> None:
    with grpc.insecure_channel(gateway.address) as channel:
        response = model_registry_pb2_grpc.ModelRegistryStub(channel).ListModels(
            model_registry_pb2.ListModelsRequest(), timeout=10
        )
    (toy_model,) = [m for m in response.models if m.disease == "toy"]
    assert toy_model.available
    assert list(toy_model.model.labels) == ["red", "green", "blue"]
    assert toy_model.replica_count == 1


def test_a_killed_backend_is_unavailable_well_inside_the_deadline(
    gateway: Process,
) -> None:
    victim = start_toy()
    register_image_route(gateway.address, "victim", victim.address)
    assert diagnose(gateway.address, "victim", RED).top_label == "red"
    victim.kill()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        diagnose(gateway.address, "victim", RED, timeout=10)
    elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert elapsed < 5, f"took {elapsed:.2f}s against a 10 s deadline"


def test_sigterm_lets_every_in_flight_call_complete(tmp_path: Path) -> None:
    slow_toy = start_toy(TOY_DELAY_MS="400", TOY_BATCH_MAX_SIZE="2")
    gateway = start_gateway(f"toy=image@{slow_toy.address}", tmp_path)
    try:
        with ThreadPoolExecutor(8) as pool:
            calls = [pool.submit(diagnose, gateway.address, "toy", RED, 30) for _ in range(8)]
            time.sleep(0.3)  # every call is now queued or running in the model
            gateway_stopping = pool.submit(gateway.terminate)
            service_exit = slow_toy.terminate()
            labels = [call.result().top_label for call in calls]
            assert gateway_stopping.result() == 0
        assert labels == ["red"] * 8
        assert service_exit == 0
    finally:
        gateway.kill()
        slow_toy.kill()


def test_routes_registered_at_run_time_survive_a_gateway_restart(
    toy: Process, tmp_path: Path
) -> None:
    first = start_gateway("", tmp_path)
    try:
        register_image_route(first.address, "published-toy", toy.address)
    finally:
        assert first.terminate() == 0
    second = start_gateway("", tmp_path)
    try:
        assert diagnose(second.address, "published-toy", RED).top_label == "red"
    finally:
        second.terminate()
