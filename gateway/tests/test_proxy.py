"""The gateway in-process, between a stub and real upstream servers: routing and proxying."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    series_analysis_service_pb2,
    series_analysis_service_pb2_grpc,
)

from gateway.tests.doubles import (
    FakeDiagnosis,
    FakeSeries,
    closed_port,
    gateway,
    gateway_settings,
    upstream,
)
from gateway.upstream import FirstStatus
from servicekit.tests.certs import make_certs


def diagnose(disease: str, image: bytes = b"jpeg") -> diagnosis_service_pb2.DiagnoseRequest:
    return diagnosis_service_pb2.DiagnoseRequest(disease=disease, image=image)


def error_reason(error: grpc.aio.AioRpcError) -> str:
    details = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    assert isinstance(details, bytes)
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(details).details[0].Unpack(info)
    reason: str = info.reason
    return reason


async def test_it_balances_diagnoses_across_the_replicas_of_a_disease(tmp_path: Path) -> None:
    alice, bob = FakeDiagnosis("alice"), FakeDiagnosis("bob")
    async with upstream(alice) as a, upstream(bob) as b:
        settings = gateway_settings(tmp_path, ROUTES=f"skin=image@{a},{b}")
        async with gateway(settings) as channel:
            stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            names = [(await stub.Diagnose(diagnose("skin"))).model_name for _ in range(4)]
    assert sorted(names) == ["alice", "alice", "bob", "bob"]
    assert names[0] != names[1]


async def test_it_answers_not_found_naming_the_known_diseases(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"skin=image@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Diagnose(diagnose("lung"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'lung'" in (caught.value.details() or "")
    assert "skin" in (caught.value.details() or "")
    assert error_reason(caught.value) == "DISEASE_UNKNOWN"


async def test_it_refuses_an_empty_disease_as_invalid(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as channel:
        stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Diagnose(diagnose(""))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_it_answers_not_found_when_a_series_disease_is_asked_to_diagnose(
    tmp_path: Path,
) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"mri=series@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Diagnose(diagnose("mri"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "SeriesAnalysisService" in (caught.value.details() or "")


async def test_it_answers_unavailable_quickly_when_the_service_is_down(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"skin=image@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Diagnose(diagnose("skin"), timeout=10)
        elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert elapsed < 1.0
    assert "127.0.0.1" not in (caught.value.details() or "")
    assert error_reason(caught.value) == "BACKEND_UNAVAILABLE"


async def test_it_retries_on_the_next_replica_when_one_is_down(tmp_path: Path) -> None:
    alice = FakeDiagnosis("alice")
    async with upstream(alice) as a:
        routes = f"skin=image@127.0.0.1:{closed_port()},{a}"
        async with gateway(gateway_settings(tmp_path, ROUTES=routes)) as channel:
            stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            names = [(await stub.Diagnose(diagnose("skin"))).model_name for _ in range(4)]
    assert names == ["alice"] * 4


async def test_it_passes_upstream_errors_through_with_their_details(tmp_path: Path) -> None:
    async with (
        upstream(FakeDiagnosis("alice")) as a,
        gateway(gateway_settings(tmp_path, ROUTES=f"skin=image@{a}")) as channel,
    ):
        stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Diagnose(diagnose("skin", b"bad"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "the file is not a readable image"
    assert error_reason(caught.value) == "IMAGE_UNREADABLE"


async def test_it_passes_an_upstream_unavailable_through_after_retrying(tmp_path: Path) -> None:
    async with (
        upstream(FakeDiagnosis("alice")) as a,
        gateway(gateway_settings(tmp_path, ROUTES=f"skin=image@{a}")) as channel,
    ):
        stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Diagnose(diagnose("skin", b"loading"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "the model is still loading"
    assert error_reason(caught.value) == "MODEL_NOT_READY"


async def test_it_forwards_the_request_id_upstream(tmp_path: Path) -> None:
    alice = FakeDiagnosis("alice")
    async with (
        upstream(alice) as a,
        gateway(gateway_settings(tmp_path, ROUTES=f"skin=image@{a}")) as channel,
    ):
        stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        await stub.Diagnose(diagnose("skin"), metadata=(("x-request-id", "req-42"),))
    assert alice.request_ids == ["req-42"]


async def test_it_gives_the_upstream_the_callers_remaining_time_capped(tmp_path: Path) -> None:
    alice = FakeDiagnosis("alice")
    async with upstream(alice) as a:
        settings = gateway_settings(
            tmp_path,
            ROUTES=f"skin=image@{a}",
            DEFAULT_DEADLINE_SECONDS="7",
            MAX_DEADLINE_SECONDS="20",
        )
        async with gateway(settings) as channel:
            stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            await stub.Diagnose(diagnose("skin"), timeout=5)
            await stub.Diagnose(diagnose("skin"))
            await stub.Diagnose(diagnose("skin"), timeout=100)
    with_deadline, without, too_long = alice.time_remaining
    assert with_deadline is not None and 4 < with_deadline <= 5.1
    assert without is not None and 6 < without <= 7.1
    assert too_long is not None and 19 < too_long <= 20.1


async def test_it_passes_model_info_through(tmp_path: Path) -> None:
    async with upstream(FakeDiagnosis("alice")) as a, upstream(FakeSeries()) as m:
        routes = f"skin=image@{a};mri=series@{m}"
        async with gateway(gateway_settings(tmp_path, ROUTES=routes)) as channel:
            image = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            series = series_analysis_service_pb2_grpc.SeriesAnalysisServiceStub(channel)
            skin = await image.GetModelInfo(
                diagnosis_service_pb2.GetModelInfoRequest(disease="skin")
            )
            mri = await series.GetSeriesModelInfo(
                series_analysis_service_pb2.GetSeriesModelInfoRequest(disease="mri")
            )
    assert skin.model.model_name == "alice"
    assert mri.model.model_name == "fake-series"


def metadata_message(
    disease: str, size: int = 10
) -> series_analysis_service_pb2.AnalyzeSeriesRequest:
    return series_analysis_service_pb2.AnalyzeSeriesRequest(
        metadata=series_analysis_service_pb2.SeriesUploadMetadata(
            disease=disease, total_size_bytes=size
        )
    )


def chunk(data: bytes) -> series_analysis_service_pb2.AnalyzeSeriesRequest:
    return series_analysis_service_pb2.AnalyzeSeriesRequest(chunk_data=data)


# The two client-streaming methods take the same upload and go through one proxy path;
# every upload test runs for both.
UPLOADS = ("AnalyzeSeries", "InspectSeries")
Answer = (
    series_analysis_service_pb2.AnalyzeSeriesResponse
    | series_analysis_service_pb2.InspectSeriesResponse
)


def upload_call(channel: grpc.aio.Channel, method: str) -> Any:
    """Returns the stub's multi-callable of an upload method (AnalyzeSeries or InspectSeries)."""
    return getattr(series_analysis_service_pb2_grpc.SeriesAnalysisServiceStub(channel), method)


def chunks_seen(answer: Answer) -> int:
    """Returns how many chunks the fake upstream counted, from either method's answer."""
    if isinstance(answer, series_analysis_service_pb2.InspectSeriesResponse):
        return answer.study.slice_count
    return answer.slice_count


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_streams_series_chunks_through_as_they_arrive(tmp_path: Path, method: str) -> None:
    mri = FakeSeries()
    async with (
        upstream(mri) as m,
        gateway(gateway_settings(tmp_path, ROUTES=f"mri=series@{m}")) as channel,
    ):
        call = upload_call(channel, method)(timeout=10)
        await call.write(metadata_message("mri"))
        await call.write(chunk(b"first"))
        # The upstream must have the first chunk while the client still holds the second.
        await asyncio.wait_for(mri.first_chunk.wait(), timeout=5)
        await call.write(chunk(b"second"))
        await call.done_writing()
        response = await call
    assert chunks_seen(response) == 2
    assert mri.chunks == [b"first", b"second"]


async def test_each_upload_method_reaches_the_upstreams_method_of_the_same_name(
    tmp_path: Path,
) -> None:
    mri = FakeSeries()
    async with (
        upstream(mri) as m,
        gateway(gateway_settings(tmp_path, ROUTES=f"mri=series@{m}")) as channel,
    ):
        stub = series_analysis_service_pb2_grpc.SeriesAnalysisServiceStub(channel)
        upload = [metadata_message("mri"), chunk(b"zip")]
        inspected = await stub.InspectSeries(iter(upload), timeout=10)
        analysed = await stub.AnalyzeSeries(iter(upload), timeout=10)
    assert mri.methods == ["InspectSeries", "AnalyzeSeries"]
    assert inspected.study.study_instance_uid == "1.2.3"
    assert analysed.model_name == "fake-series"


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_gives_an_upload_the_series_deadline_capped(tmp_path: Path, method: str) -> None:
    mri = FakeSeries()
    async with upstream(mri) as m:
        settings = gateway_settings(
            tmp_path,
            ROUTES=f"mri=series@{m}",
            SERIES_DEADLINE_SECONDS="40",
            MAX_DEADLINE_SECONDS="60",
        )
        async with gateway(settings) as channel:
            call = upload_call(channel, method)
            upload = [metadata_message("mri"), chunk(b"zip")]
            await call(iter(upload))
            await call(iter(upload), timeout=5)
            await call(iter(upload), timeout=100)
    without, with_deadline, too_long = mri.time_remaining
    assert without is not None and 39 < without <= 40.1
    assert with_deadline is not None and 4 < with_deadline <= 5.1
    assert too_long is not None and 59 < too_long <= 60.1


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_passes_a_series_refusal_through_mid_upload(tmp_path: Path, method: str) -> None:
    async with (
        upstream(FakeSeries(max_size_bytes=5)) as m,
        gateway(gateway_settings(tmp_path, ROUTES=f"mri=series@{m}")) as channel,
    ):

        async def upload() -> Answer:
            call = upload_call(channel, method)(timeout=10)
            status = FirstStatus()  # a client needs it too: grpc/grpc#36066
            call.add_done_callback(status)
            try:
                await call.write(metadata_message("mri", size=1000))
                for _ in range(8):  # more than HTTP/2's flow-control windows hold
                    await call.write(chunk(b"x" * 256 * 1024))
                await call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass  # a write after the refusal fails; the call's status says why
            try:
                answer: Answer = await call
            except grpc.aio.AioRpcError as error:
                raise status.server_error(error) from None
            return answer

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "the series is larger than this service accepts"
    assert error_reason(caught.value) == "SERIES_INVALID"


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_refuses_a_series_upload_that_does_not_start_with_metadata(
    tmp_path: Path, method: str
) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"mri=series@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload_call(channel, method)(iter([chunk(b"zip")]))
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await upload_call(channel, method)(iter([]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == f"the first message of {method} must carry the upload metadata"
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert empty.value.details() == f"{method} needs the upload metadata as its first message"


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_answers_unavailable_quickly_for_a_series_when_the_service_is_down(
    tmp_path: Path, method: str
) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"mri=series@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload_call(channel, method)(
                iter([metadata_message("mri"), chunk(b"zip")]), timeout=10
            )
        elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert elapsed < 1.0
    assert "127.0.0.1" not in (caught.value.details() or "")
    assert error_reason(caught.value) == "BACKEND_UNAVAILABLE"


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_answers_not_found_for_an_upload_of_an_unknown_disease(
    tmp_path: Path, method: str
) -> None:
    settings = gateway_settings(tmp_path, ROUTES=f"mri=series@127.0.0.1:{closed_port()}")
    async with gateway(settings) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload_call(channel, method)(
                iter([metadata_message("lung"), chunk(b"zip")]), timeout=10
            )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "DISEASE_UNKNOWN"


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_cancels_the_upstream_upload_when_the_client_gives_up(
    tmp_path: Path, method: str
) -> None:
    mri = FakeSeries()
    async with (
        upstream(mri) as m,
        gateway(gateway_settings(tmp_path, ROUTES=f"mri=series@{m}")) as channel,
    ):
        call = upload_call(channel, method)(timeout=10)
        await call.write(metadata_message("mri"))
        await call.write(chunk(b"first"))
        await asyncio.wait_for(mri.first_chunk.wait(), timeout=5)
        call.cancel()
        await asyncio.wait_for(mri.cancelled.wait(), timeout=5)
    assert mri.completed == 0


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_never_retries_a_series_upload_once_a_chunk_went_out(
    tmp_path: Path, method: str
) -> None:
    alice, bob = FakeSeries(fail_after_first_chunk=True), FakeSeries(fail_after_first_chunk=True)
    async with (
        upstream(alice) as a,
        upstream(bob) as b,
        gateway(gateway_settings(tmp_path, ROUTES=f"mri=series@{a},{b}")) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload_call(channel, method)(
                iter([metadata_message("mri"), chunk(b"zip")]), timeout=10
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "the model went away"
    assert alice.calls + bob.calls == 1


@pytest.mark.parametrize("method", UPLOADS)
async def test_it_opens_a_series_upload_on_the_next_replica_when_one_is_down(
    tmp_path: Path, method: str
) -> None:
    mri = FakeSeries()
    async with upstream(mri) as m:
        routes = f"mri=series@127.0.0.1:{closed_port()},{m}"
        async with gateway(gateway_settings(tmp_path, ROUTES=routes)) as channel:
            for _ in range(3):
                upload = iter([metadata_message("mri"), chunk(b"zip")])
                await upload_call(channel, method)(upload, timeout=10)
    assert mri.calls == 3
    assert mri.methods == [method] * 3


async def test_it_reaches_upstreams_over_mutual_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    upstream_env = {
        "UP_TLS_CERT_FILE": str(certs.server_cert),
        "UP_TLS_KEY_FILE": str(certs.server_key),
        "UP_TLS_CLIENT_CA_FILE": str(certs.ca),
    }
    async with upstream(FakeDiagnosis("alice"), upstream_env) as a:
        settings = gateway_settings(
            tmp_path,
            ROUTES=f"skin=image@{a}",
            UPSTREAM_TLS_CA_FILE=str(certs.ca),
            UPSTREAM_TLS_CERT_FILE=str(certs.client_cert),
            UPSTREAM_TLS_KEY_FILE=str(certs.client_key),
            UPSTREAM_TLS_SERVER_NAME="localhost",
        )
        async with gateway(settings) as channel:
            stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
            answer = await stub.Diagnose(diagnose("skin"), timeout=10)
    assert answer.model_name == "alice"
