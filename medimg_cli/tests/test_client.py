"""Tests of `medimg diagnose` and `medimg models`: tables, errors, and calls to a test gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_info_pb2,
    model_registry_pb2,
    model_registry_pb2_grpc,
)

from medimg_cli.__main__ import main
from medimg_cli.client import (
    CallFailed,
    describe_failure,
    exit_code_for,
    format_diagnoses,
    format_models,
    format_table,
    gateway_address,
)

ClassScore = diagnosis_service_pb2.ClassScore


def skin_response(*, demo: bool = True) -> diagnosis_service_pb2.DiagnoseResponse:
    return diagnosis_service_pb2.DiagnoseResponse(
        disease="skin",
        top_label="melanoma",
        top_score=0.9,
        scores=[
            ClassScore(label="melanoma", score=0.9),
            ClassScore(label="common_nevus", score=0.06),
            ClassScore(label="atypical_nevus", score=0.04),
        ],
        model_name="skin-lesion-cnn",
        model_version="2026.11.1",
        demo_model=demo,
    )


def test_a_table_aligns_columns_and_numbers_to_the_right() -> None:
    table = format_table(["name", "n"], [["a", "1"], ["bbb", "22"]], right=frozenset({1}))
    assert table.splitlines() == ["name   n", "----  --", "a      1", "bbb   22"]


def test_diagnoses_show_label_every_class_and_model_with_the_demo_notice() -> None:
    table = format_diagnoses([("lesion.jpg", skin_response())])
    assert table.splitlines() == [
        "file        label     atypical_nevus  common_nevus  melanoma  model",
        "----------  --------  --------------  ------------  --------  -------------------------",
        "lesion.jpg  melanoma           0.040         0.060     0.900  skin-lesion-cnn 2026.11.1",
        "demo model — not for clinical use",
    ]


def test_a_real_model_gets_no_demo_notice() -> None:
    assert "clinical" not in format_diagnoses([("a.png", skin_response(demo=False))])


def test_models_show_kind_version_labels_replicas_and_availability() -> None:
    info = model_info_pb2.ModelInfo(
        disease="skin",
        model_name="skin-lesion-cnn",
        model_version="2026.11.1",
        labels=["melanoma", "common_nevus"],
        demo_model=True,
    )
    models = [
        model_registry_pb2.RegisteredModel(
            disease="mri",
            kind=model_info_pb2.MODEL_KIND_SERIES_ANALYZER,
            available=False,
            unavailable_reason="connection refused",
            replica_count=1,
        ),
        model_registry_pb2.RegisteredModel(
            disease="skin",
            kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
            model=info,
            available=True,
            replica_count=2,
        ),
    ]
    lines = format_models(models).splitlines()
    headers = ["disease", "kind", "model", "version", "labels", "replicas", "status"]
    assert lines[0].split() == headers
    assert lines[2].split()[:6] == ["mri", "series", "-", "-", "-", "1"]
    assert lines[2].endswith("unavailable: connection refused")
    assert (
        "skin-lesion-cnn (demo)  2026.11.1  melanoma, common_nevus         2  available" in lines[3]
    )
    assert "not for clinical use" in lines[4]


def test_no_models_is_said_in_words() -> None:
    assert format_models([]) == "the gateway routes no diseases yet"


def test_caller_errors_exit_2_and_the_rest_exit_1() -> None:
    assert exit_code_for(grpc.StatusCode.INVALID_ARGUMENT) == 2
    assert exit_code_for(grpc.StatusCode.NOT_FOUND) == 2
    assert exit_code_for(grpc.StatusCode.UNAVAILABLE) == 1
    assert exit_code_for(grpc.StatusCode.INTERNAL) == 1


def test_an_unavailable_gateway_gets_a_hint() -> None:
    failure = CallFailed(grpc.StatusCode.UNAVAILABLE, "connection refused", "", "rid")
    text = describe_failure(failure, subject="a.jpg", address="h:1", timeout_s=30)
    assert text.splitlines() == [
        "a.jpg: UNAVAILABLE: connection refused",
        "is the gateway running at h:1? `medimg up` starts it",
        "request id: rid",
    ]


def test_the_reason_is_shown_beside_the_code() -> None:
    failure = CallFailed(grpc.StatusCode.INVALID_ARGUMENT, "not an image", "IMAGE_INVALID", "r")
    text = describe_failure(failure, subject="a.jpg", address="h:1", timeout_s=30)
    assert text.splitlines()[0] == "a.jpg: INVALID_ARGUMENT (IMAGE_INVALID): not an image"


def test_the_gateway_address_comes_from_the_flag_then_the_variable_then_the_default() -> None:
    assert gateway_address("h:1", {"MEDIMG_GATEWAY": "h:2"}) == "h:1"
    assert gateway_address(None, {"MEDIMG_GATEWAY": "h:2"}) == "h:2"
    assert gateway_address(None, {}) == "127.0.0.1:50051"


class FakeDiagnosis(diagnosis_service_pb2_grpc.DiagnosisServiceServicer):
    """Answers skin with a fixed diagnosis and anything else with NOT_FOUND."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int, str]] = []

    async def Diagnose(
        self,
        request: diagnosis_service_pb2.DiagnoseRequest,
        context: grpc.aio.ServicerContext[
            diagnosis_service_pb2.DiagnoseRequest, diagnosis_service_pb2.DiagnoseResponse
        ],
    ) -> diagnosis_service_pb2.DiagnoseResponse:
        metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
        self.requests.append((request.disease, len(request.image), metadata["x-request-id"]))
        if request.disease != "skin":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no disease {request.disease!r}")
        return skin_response()

    async def GetModelInfo(
        self,
        request: diagnosis_service_pb2.GetModelInfoRequest,
        context: grpc.aio.ServicerContext[
            diagnosis_service_pb2.GetModelInfoRequest, diagnosis_service_pb2.GetModelInfoResponse
        ],
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")


class FakeRegistry(model_registry_pb2_grpc.ModelRegistryServicer):
    """Lists one unreachable disease."""

    async def ListModels(
        self,
        request: model_registry_pb2.ListModelsRequest,
        context: grpc.aio.ServicerContext[
            model_registry_pb2.ListModelsRequest, model_registry_pb2.ListModelsResponse
        ],
    ) -> model_registry_pb2.ListModelsResponse:
        entry = model_registry_pb2.RegisteredModel(
            disease="skin",
            kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
            available=False,
            unavailable_reason="starting",
            replica_count=1,
        )
        return model_registry_pb2.ListModelsResponse(models=[entry])

    async def RegisterModel(
        self,
        request: model_registry_pb2.RegisterModelRequest,
        context: grpc.aio.ServicerContext[
            model_registry_pb2.RegisterModelRequest, model_registry_pb2.RegisterModelResponse
        ],
    ) -> model_registry_pb2.RegisterModelResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    async def UnregisterModel(
        self,
        request: model_registry_pb2.UnregisterModelRequest,
        context: grpc.aio.ServicerContext[
            model_registry_pb2.UnregisterModelRequest, model_registry_pb2.UnregisterModelResponse
        ],
    ) -> model_registry_pb2.UnregisterModelResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[str, FakeDiagnosis]]:
    """Yields the address of an in-process gateway double, and its diagnosis servicer."""
    server = grpc.aio.server()
    diagnosis = FakeDiagnosis()
    diagnosis_service_pb2_grpc.add_DiagnosisServiceServicer_to_server(diagnosis, server)
    model_registry_pb2_grpc.add_ModelRegistryServicer_to_server(FakeRegistry(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", diagnosis
    await server.stop(None)


async def run_cli(*argv: str) -> int:
    # The command blocks on its calls; a thread keeps this loop free to serve them.
    return await asyncio.to_thread(main, list(argv))


async def test_diagnose_prints_one_row_per_file(
    gateway: tuple[str, FakeDiagnosis],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, diagnosis = gateway
    monkeypatch.chdir(tmp_path)
    Path("first.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Path("second.png").write_bytes(b"\x89PNG")

    code = await run_cli(
        "--gateway", address, "diagnose", "--disease", "skin", "first.jpg", "second.png"
    )

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[2:] == [
        "first.jpg   melanoma           0.040         0.060     0.900  skin-lesion-cnn 2026.11.1",
        "second.png  melanoma           0.040         0.060     0.900  skin-lesion-cnn 2026.11.1",
        "demo model — not for clinical use",
    ]
    assert [(disease, size) for disease, size, _ in diagnosis.requests] == [
        ("skin", 20),
        ("skin", 4),
    ]
    request_ids = {request_id for _, _, request_id in diagnosis.requests}
    assert len(request_ids) == 2
    assert all(len(request_id) == 32 for request_id in request_ids)


async def test_an_unknown_disease_exits_2_with_the_code_and_details(
    gateway: tuple[str, FakeDiagnosis], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = gateway
    image = tmp_path / "lung.png"
    image.write_bytes(b"\x89PNG")

    code = await run_cli("diagnose", "--gateway", address, "--disease", "lung", str(image))

    err = capsys.readouterr().err
    assert code == 2
    assert f"medimg diagnose: error: {image}: NOT_FOUND: no disease 'lung'" in err
    assert "request id: " in err


async def test_a_missing_file_stops_before_any_call(
    gateway: tuple[str, FakeDiagnosis], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, diagnosis = gateway
    present = tmp_path / "present.jpg"
    present.write_bytes(b"x")
    missing = tmp_path / "missing.jpg"

    code = await run_cli(
        "--gateway", address, "diagnose", "--disease", "skin", str(present), str(missing)
    )

    assert code == 2
    assert f"medimg diagnose: error: {missing}: no such file" in capsys.readouterr().err
    assert diagnosis.requests == []


async def test_an_unreachable_gateway_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")

    code = await run_cli(
        "diagnose", "--gateway", f"127.0.0.1:{unused_tcp_port}", "--disease", "skin", str(image)
    )

    assert code == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


async def test_models_prints_the_registry(
    gateway: tuple[str, FakeDiagnosis], capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = gateway

    code = await run_cli("models", "--gateway", address)

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[2].split() == ["skin", "image", "-", "-", "-", "1", "unavailable:", "starting"]


async def test_the_gateway_variable_is_used_without_the_flag(
    gateway: tuple[str, FakeDiagnosis],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, _ = gateway
    monkeypatch.setenv("MEDIMG_GATEWAY", address)

    assert await run_cli("models") == 0
