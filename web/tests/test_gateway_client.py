"""The web tier's gateway client against an in-process gRPC server that plays the gateway."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from servicekit.request_context import reset_request_id, set_request_id
from web import gateway_client
from web.gateway_client import GatewayClient, GatewayConfig, GatewayError
from web.tests.fake_gateway import (
    LABELS,
    FakeGateway,
    closed_port,
    serve,
)


@pytest.fixture()
def fake() -> FakeGateway:
    return FakeGateway()


@pytest.fixture()
def client(fake: FakeGateway) -> Iterator[GatewayClient]:
    server, port = serve(fake)
    config = GatewayConfig(address=f"127.0.0.1:{port}", diagnose_timeout_s=5, info_timeout_s=2)
    client = GatewayClient(config)
    yield client
    client.close()
    server.stop(0)


def test_it_returns_the_diagnosis_with_every_class_score_and_the_model(
    client: GatewayClient,
) -> None:
    result = client.diagnose(image=b"png", disease="skin", request_id="req-1")
    assert (result.disease, result.top_label, result.top_score) == ("skin", "melanoma", 0.7)
    assert [s.label for s in result.scores] == ["melanoma", "atypical_nevus", "common_nevus"]
    assert sum(s.score for s in result.scores) == pytest.approx(1.0)
    assert (result.model_name, result.model_version, result.demo_model) == (
        "fake",
        "2026.11.1",
        True,
    )
    assert result.elapsed_ms > 0


def test_it_sends_the_request_id_as_metadata_and_keeps_it(
    client: GatewayClient, fake: FakeGateway
) -> None:
    result = client.diagnose(image=b"png", disease="skin", request_id="browser-42")
    assert fake.request_ids == ["browser-42"]
    assert result.request_id == "browser-42"


def test_it_sends_the_current_request_id_when_none_is_given(
    client: GatewayClient, fake: FakeGateway
) -> None:
    token = set_request_id("from-middleware")
    try:
        client.list_models()
    finally:
        reset_request_id(token)
    client.list_models()
    first, second = fake.request_ids[:2], fake.request_ids[2:]  # two pages each
    assert first == ["from-middleware"] * 2
    assert len(second) == 2 and second[0] == second[1] and len(second[0]) == 32  # a fresh one


def test_it_replaces_a_malformed_request_id_with_a_fresh_one(
    client: GatewayClient, fake: FakeGateway
) -> None:
    result = client.diagnose(image=b"png", disease="skin", request_id="bad id\n")
    assert fake.request_ids == [result.request_id]
    assert result.request_id != "bad id\n" and len(result.request_id) == 32


def test_every_call_carries_a_deadline(client: GatewayClient, fake: FakeGateway) -> None:
    client.diagnose(image=b"png", disease="skin")
    client.model_info(disease="skin")
    client.list_models()
    client.analyze_series(chunks=[b"zip"], disease="mri")
    remaining = fake.time_remaining
    assert len(remaining) == 5 and all(r is not None for r in remaining)
    diagnose, info, page_1, page_2, series = (float(r or 0) for r in remaining)
    assert 4 < diagnose < 5.1 and 1 < info < 2.1 and 250 < series < 302  # grpc rounds up
    assert 1 < page_1 < 2.1 and 1 < page_2 < 2.1  # the two pages share the one deadline


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        ("INVALID_ARGUMENT", 400),
        ("NOT_FOUND", 404),
        ("RESOURCE_EXHAUSTED", 429),
        ("UNAVAILABLE", 503),
        ("DEADLINE_EXCEEDED", 504),
        ("INTERNAL", 500),
        ("UNKNOWN", 500),
        ("UNAUTHENTICATED", 502),
        ("PERMISSION_DENIED", 502),
        ("FAILED_PRECONDITION", 502),
        ("UNIMPLEMENTED", 502),
    ],
)
def test_it_maps_each_status_code_to_its_http_status(
    client: GatewayClient, code: str, http_status: int
) -> None:
    with pytest.raises(GatewayError) as caught:
        client.diagnose(image=f"code:{code}".encode(), disease="skin", request_id="r-7")
    error = caught.value
    assert (error.code, error.http_status, error.reason) == (code, http_status, "WHY")
    assert error.request_id == "r-7"
    assert error.message


def test_every_grpc_status_but_ok_has_an_outcome() -> None:
    missing = set(grpc.StatusCode) - set(gateway_client.STATUS_OUTCOMES) - {grpc.StatusCode.OK}
    assert missing == set()


def test_bad_input_shows_the_gateways_message(client: GatewayClient) -> None:
    with pytest.raises(GatewayError) as caught:
        client.diagnose(image=b"code:INVALID_ARGUMENT", disease="skin")
    assert caught.value.message == "The image is truncated or corrupt; upload it again."
    assert not caught.value.retryable


def test_other_failures_show_a_friendly_message_not_the_gateways(client: GatewayClient) -> None:
    with pytest.raises(GatewayError) as caught:
        client.diagnose(image=b"code:INTERNAL", disease="skin")
    assert "truncated" not in caught.value.message
    assert caught.value.message.startswith("Something went wrong on our side")


def test_a_gateway_that_is_down_is_503_with_retry_after_within_a_second() -> None:
    client = GatewayClient(GatewayConfig(address=f"127.0.0.1:{closed_port()}"))
    started = time.monotonic()
    try:
        with pytest.raises(GatewayError) as caught:
            client.diagnose(image=b"png", disease="skin")
    finally:
        client.close()
    assert time.monotonic() - started < 1.5
    assert (caught.value.http_status, caught.value.retry_after_s) == (503, 30)
    assert caught.value.retryable
    assert "unavailable" in caught.value.message


def test_a_slow_gateway_is_a_504_at_the_deadline(fake: FakeGateway) -> None:
    fake.delay_s = 0.5
    server, port = serve(fake)
    client = GatewayClient(GatewayConfig(address=f"127.0.0.1:{port}", diagnose_timeout_s=0.1))
    try:
        with pytest.raises(GatewayError) as caught:
            client.diagnose(image=b"png", disease="skin")
    finally:
        client.close()
        server.stop(0)
    assert (caught.value.code, caught.value.http_status) == ("DEADLINE_EXCEEDED", 504)


def test_it_describes_a_model_and_reports_an_unknown_disease_as_404(
    client: GatewayClient,
) -> None:
    info = client.model_info(disease="skin")
    assert (info.kind, info.labels, info.demo_model) == ("image", LABELS, True)
    assert client.series_model_info(disease="mri").kind == "series"
    with pytest.raises(GatewayError) as caught:
        client.model_info(disease="retina")
    assert (caught.value.http_status, caught.value.reason) == (404, "DISEASE_UNKNOWN")


def test_it_lists_the_routed_models_with_unreachable_ones_marked(client: GatewayClient) -> None:
    models = client.list_models()
    assert [(m.disease, m.kind, m.available, m.replica_count) for m in models] == [
        ("mri", "series", False, 1),
        ("skin", "image", True, 2),
    ]
    assert models[0].model is None and models[0].unavailable_reason
    assert models[1].model is not None and models[1].model.model_name == "skin-demo"


def test_it_streams_a_series_in_chunks_and_returns_the_findings(
    client: GatewayClient, fake: FakeGateway, tmp_path: Any
) -> None:
    path = tmp_path / "series.zip"
    path.write_bytes(b"z" * (gateway_client.SERIES_CHUNK_BYTES * 2 + 10))
    with path.open("rb") as stream:
        result = client.analyze_series(
            chunks=gateway_client.file_chunks(stream),
            disease="mri",
            total_size_bytes=path.stat().st_size,
            request_id="series-1",
        )
    assert [len(c) for c in fake.chunks] == [262144, 262144, 10]
    assert result.positive_slice_indices == (1,)
    assert [f.positive for f in result.slices] == [False, True]
    assert result.slices[1].scores[0].model_name == "single"
    assert (result.upload_ms, result.prepare_ms, result.model_ms) == (1.5, 2.5, 3.5)
    assert (result.request_id, result.demo_model) == ("series-1", True)


def test_an_upload_the_service_refuses_early_keeps_the_services_status(
    client: GatewayClient, fake: FakeGateway
) -> None:
    fake.refuse_series_above = 10
    sent = threading.Event()

    def endless() -> Iterator[bytes]:
        for _ in range(2000):
            sent.set()
            yield b"x" * 65536

    with pytest.raises(GatewayError) as caught:
        client.analyze_series(chunks=endless(), disease="mri", total_size_bytes=1 << 30)
    assert (caught.value.code, caught.value.reason) == ("INVALID_ARGUMENT", "SERIES_TOO_LARGE")
    assert caught.value.message == "The series is larger than this service accepts."


def test_one_channel_spreads_calls_over_every_address_round_robin() -> None:
    first, second = FakeGateway(name="one"), FakeGateway(name="two")
    (server_1, port_1), (server_2, port_2) = serve(first), serve(second)
    # One name that resolves to two addresses, as a headless Service's name does.
    client = GatewayClient(GatewayConfig(address=f"ipv4:127.0.0.1:{port_1},127.0.0.1:{port_2}"))
    try:
        names = {client.diagnose(image=b"png", disease="skin").model_name for _ in range(8)}
    finally:
        client.close()
        server_1.stop(0)
        server_2.stop(0)
    assert names == {"one", "two"}


def test_a_stored_status_name_maps_through_the_same_table() -> None:
    assert gateway_client.outcome_for_name("UNAVAILABLE").http_status == 503
    assert gateway_client.outcome_for_name("RESOURCE_EXHAUSTED").retry_after_s == 5
    assert gateway_client.outcome_for_name("NOT_A_CODE").http_status == 500


def test_the_analysis_carries_each_slices_images_the_study_and_the_previews(
    client: GatewayClient, fake: FakeGateway
) -> None:
    result = client.analyze_series(chunks=[b"zip"], disease="mri", preview_size_px=128)
    assert fake.preview_sizes == [128]
    assert result.slices[1].images == (
        gateway_client.SliceImage("pre", "1.2.3.1", 11, -11.5),
        gateway_client.SliceImage("1st_pass", "1.2.4.1", None, None),
    )
    assert result.previews == (b"\x89PNG-0", b"\x89PNG-1")
    assert result.study == EXPECTED_STUDY
    # Not asked for: no DICOM results.
    assert fake.dicom_reports == [False]
    assert (result.measurement_report, result.key_images) == (b"", b"")


def test_an_analysis_asked_for_dicom_reports_carries_the_sr_and_the_kos(
    client: GatewayClient, fake: FakeGateway
) -> None:
    result = client.analyze_series(chunks=[b"zip"], disease="mri", dicom_reports=True)
    assert fake.dicom_reports == [True]
    assert (result.measurement_report, result.key_images) == (b"SR", b"KOS")


def test_an_inspection_returns_the_study_and_asks_for_no_previews_by_default(
    client: GatewayClient, fake: FakeGateway
) -> None:
    inspection = client.inspect_series(
        chunks=[b"zi", b"p"], disease="mri", total_size_bytes=3, request_id="inspect-1"
    )
    assert inspection.study == EXPECTED_STUDY
    assert inspection.previews == () and inspection.request_id == "inspect-1"
    assert fake.chunks == [b"zi", b"p"] and fake.preview_sizes == [0]
    assert fake.request_ids == ["inspect-1"]
    remaining = fake.time_remaining[0]
    assert remaining is not None and 250 < remaining < 302  # the series deadline


def test_an_inspection_the_service_refuses_keeps_its_message_and_reason(
    client: GatewayClient, fake: FakeGateway
) -> None:
    fake.refuse_series_above = 10
    with pytest.raises(GatewayError) as caught:
        client.inspect_series(chunks=[b"x" * 20], disease="mri", total_size_bytes=20)
    assert (caught.value.code, caught.value.reason, caught.value.http_status) == (
        "INVALID_ARGUMENT",
        "SERIES_TOO_LARGE",
        413,  # over a limit: 413, as every "too large" is
    )
    assert caught.value.message == "The series is larger than this service accepts."


EXPECTED_STUDY = gateway_client.StudySummary(
    study_instance_uid="1.2.3",
    phases=(
        gateway_client.SelectedPhase("pre", "1.2.3.10", "dyn eTHRIVE", 10, 1, 2),
        gateway_client.SelectedPhase("1st_pass", "1.2.3.10", "", None, 2, 2),
    ),
    unused_series=(
        gateway_client.UnusedSeries("1.2.3.1", "SURVEY", 1, "MR", 3, "a localiser"),
        gateway_client.UnusedSeries("1.2.3.9", "", None, "SR", 0, "not an image"),
    ),
    skipped_files=(gateway_client.SkippedFile("DICOMDIR", "a DICOMDIR"),),
    slice_count=2,
    ordered_by="position",
    selected_by="multiphase",
)


@pytest.mark.parametrize(
    ("reason", "http_status"),
    [("IMAGE_TOO_LARGE", 413), ("SERIES_UPLOAD_TOO_LARGE", 413), ("IMAGE_TRUNCATED", 400)],
)
def test_a_refusal_over_a_limit_is_413_whichever_service_found_it(
    reason: str, http_status: int
) -> None:
    error = GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT, "too big", reason=reason, request_id="r-1"
    )
    assert error.http_status == http_status
    assert (
        GatewayError(
            grpc.StatusCode.UNAVAILABLE, "down", reason=reason, request_id="r-1"
        ).http_status
        == 503
    )
