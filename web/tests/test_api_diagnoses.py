"""The diagnoses and models API through the test client: Alice owns, Bob must not see.

The gateway is a real gRPC server in this process that answers like the gateway (the
one from test_gateway_client), so that every status code it can send is reachable;
test_api_e2e.py runs the real gateway and skin service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from web.accounts.models import User
from web.core.context_processors import DEMO_MODEL_WARNING
from web.diagnoses.models import Diagnosis
from web.tests.api_support import (
    API,
    ApiFakeGateway,
    assert_error,
    by_url,
    media,
    token_client,
    upload,
)
from web.tests.fake_gateway import serve
from web.tests.fetch_support import LocalServer, send, start_server
from web.tests.test_diagnoses_services import (
    BAD_UPLOADS,
    closed_port,
    diagnosed,
    jpeg,
    png,
    stored_files,
)

__all__ = ["media"]  # the fixture: private storage in a folder of the test's own


@pytest.fixture
def gateway(settings: Any, media: Path) -> Iterator[ApiFakeGateway]:
    """Runs the fake gateway on a free loopback port; the web tier's settings point at it."""
    fake = ApiFakeGateway(name="skin-demo")
    server, port = serve(fake)
    settings.GATEWAY_ADDR = f"127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.stop(0)


@pytest.fixture
def gateway_down(settings: Any, media: Path) -> None:
    """Points the gateway client at a loopback port nothing listens on."""
    settings.GATEWAY_ADDR = f"127.0.0.1:{closed_port()}"


@pytest.fixture
def api_alice(alice: User) -> Client:
    """Alice's program: token authentication, no session."""
    return token_client(alice)


@pytest.fixture
def api_bob(bob: User) -> Client:
    return token_client(bob)


# --- POST diagnoses/ ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_alice_uploads_a_photo_and_gets_201_with_the_whole_diagnosis(
    api_alice: Client, alice: User, gateway: ApiFakeGateway
) -> None:
    response = upload(api_alice, jpeg(), request_id="api-upload-0001")
    assert response.status_code == 201, response.content
    body = response.json()
    record = Diagnosis.objects.get()
    assert body["id"] == str(record.pk) and record.user == alice
    assert (body["disease"], body["status"]) == ("skin", "done")
    assert (body["top_label"], body["top_score"]) == ("melanoma", 0.7)
    assert body["scores"] == [
        {"label": "melanoma", "score": 0.7},
        {"label": "atypical_nevus", "score": 0.2},
        {"label": "common_nevus", "score": 0.1},
    ]
    assert (body["model_name"], body["model_version"]) == ("skin-demo", "2026.11.1")
    assert body["demo_model"] is True and body["notice"] == DEMO_MODEL_WARNING
    assert "not for clinical use" in body["notice"]
    assert body["request_id"] == "api-upload-0001" == gateway.request_ids[-1]
    assert body["failure"] is None
    links = body["links"]
    assert response["Location"] == links["self"] == f"http://testserver{API}/diagnoses/{record.pk}/"
    assert links["image"] == f"http://testserver{API}/diagnoses/{record.pk}/image/"
    assert links["page"] == f"http://testserver/diagnose/{record.pk}/"
    assert "retry" not in links
    assert "media" not in str(body) and "IMG_0042" not in str(body)


def test_an_upload_names_its_disease(api_alice: Client, gateway: ApiFakeGateway) -> None:
    response = upload(api_alice, png(), disease="skin")
    assert response.status_code == 201
    assert_error(upload(api_alice, png(), disease="Skin; DROP"), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("kind", sorted(BAD_UPLOADS))
def test_a_bad_upload_is_a_400_or_a_413_with_its_reason_and_leaves_nothing(
    kind: str, api_alice: Client, gateway: ApiFakeGateway, media: Path
) -> None:
    make, reason = BAD_UPLOADS[kind]
    # Over a limit is 413, as for a series; anything else wrong with the image is 400.
    if reason in ("IMAGE_TOO_LARGE", "IMAGE_TOO_MANY_PIXELS"):
        expected = (413, "PAYLOAD_TOO_LARGE")
    else:
        expected = (400, "INVALID_ARGUMENT")
    error = assert_error(upload(api_alice, make()), *expected, reason)
    assert "Alice" not in error["message"]
    assert Diagnosis.objects.count() == 0 and stored_files(media) == []
    assert gateway.request_ids == []


def test_a_request_with_neither_image_nor_url_says_what_to_send(
    api_alice: Client, gateway: ApiFakeGateway
) -> None:
    response = api_alice.post(f"{API}/diagnoses/", {}, content_type="application/json")
    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert error["message"].startswith("image_url: Send the image as the multipart field `image`")
    assert "image_url" in error["fields"]
    missing = api_alice.post(f"{API}/diagnoses/", {"disease": "skin"})  # multipart, no file
    assert "image" in assert_error(missing, 400, "INVALID_ARGUMENT")["fields"]


def test_a_form_encoded_body_is_a_415(api_alice: Client, gateway: ApiFakeGateway) -> None:
    response = api_alice.post(
        f"{API}/diagnoses/",
        "image_url=http%3A%2F%2Fexample.com%2Fa.png",
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_a_json_body_over_the_memory_limit_is_a_413(
    api_alice: Client, gateway: ApiFakeGateway, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api_alice.post(
        f"{API}/diagnoses/", {"image_url": "x" * 2000}, content_type="application/json"
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


# --- POST diagnoses/ with image_url ---------------------------------------------------------------


@pytest.fixture
def image_server() -> Iterator[Callable[[bytes, str], LocalServer]]:
    stops = []

    def start(body: bytes, content_type: str) -> LocalServer:
        record, stop = start_server(send(body, content_type=content_type))
        stops.append(stop)
        return record

    yield start
    for stop in stops:
        stop()


def test_an_image_url_on_an_allowed_network_is_fetched_and_diagnosed(
    api_alice: Client,
    gateway: ApiFakeGateway,
    settings: Any,
    image_server: Callable[[bytes, str], LocalServer],
) -> None:
    settings.WEB_IMAGE_URL_ALLOW_NETWORKS = ["127.0.0.1/32"]
    server = image_server(png(), "application/octet-stream")
    response = by_url(api_alice, f"http://127.0.0.1:{server.port}/lesion.png")
    assert response.status_code == 201, response.content
    record = Diagnosis.objects.get(pk=response.json()["id"])
    assert (record.status, record.image_format) == (Diagnosis.Status.DONE, "PNG")
    assert server.requests[0]["user-agent"].startswith("medimg-image-fetch")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "IMAGE_URL_SCHEME"),
        ("ftp://127.0.0.1/a.png", "IMAGE_URL_SCHEME"),
        ("http://127.0.0.1:{port}/a.png", "IMAGE_URL_ADDRESS"),
        ("http://localhost:{port}/a.png", "IMAGE_URL_ADDRESS"),
        ("http://10.0.0.8/a.png", "IMAGE_URL_ADDRESS"),
        ("http://169.254.169.254/latest/meta-data/", "IMAGE_URL_ADDRESS"),
        ("http://[::1]:{port}/a.png", "IMAGE_URL_ADDRESS"),
        ("http://[::ffff:127.0.0.1]:{port}/a.png", "IMAGE_URL_ADDRESS"),
    ],
)
def test_an_image_url_that_is_not_a_public_http_address_is_refused_and_stores_nothing(
    url: str,
    reason: str,
    api_alice: Client,
    gateway: ApiFakeGateway,
    media: Path,
    image_server: Callable[[bytes, str], LocalServer],
) -> None:
    server = image_server(png(), "image/png")
    response = by_url(api_alice, url.format(port=server.port))
    assert_error(response, 400, "INVALID_ARGUMENT", reason)
    assert server.connections == 0
    assert Diagnosis.objects.count() == 0 and stored_files(media) == []


def test_an_image_url_that_serves_html_labelled_as_png_is_refused(
    api_alice: Client,
    gateway: ApiFakeGateway,
    settings: Any,
    media: Path,
    image_server: Callable[[bytes, str], LocalServer],
) -> None:
    settings.WEB_IMAGE_URL_ALLOW_NETWORKS = ["127.0.0.0/8"]
    server = image_server(b"<!doctype html><p>login</p>", "image/png")
    response = by_url(api_alice, f"http://127.0.0.1:{server.port}/a.png")
    assert_error(response, 400, "INVALID_ARGUMENT", "IMAGE_UNREADABLE")
    assert Diagnosis.objects.count() == 0 and stored_files(media) == []


def test_an_image_url_to_a_redirect_is_refused(
    api_alice: Client, gateway: ApiFakeGateway, settings: Any
) -> None:
    settings.WEB_IMAGE_URL_ALLOW_NETWORKS = ["127.0.0.0/8"]

    def redirect(request: BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        request.send_header("Content-Length", "0")
        request.end_headers()

    record, stop = start_server(redirect)
    try:
        response = by_url(api_alice, f"http://127.0.0.1:{record.port}/a.png")
    finally:
        stop()
    error = assert_error(response, 400, "INVALID_ARGUMENT", "IMAGE_URL_REDIRECT")
    assert "redirects" in error["message"]


# --- the gateway fails: the record is kept and the answer says why -------------------------------


@pytest.mark.postgres
def test_with_the_gateway_down_the_upload_is_kept_and_the_answer_is_503_with_retry_after(
    api_alice: Client, gateway_down: None, media: Path
) -> None:
    response = upload(api_alice, jpeg())
    error = assert_error(response, 503, "UNAVAILABLE")
    assert response["Retry-After"] == "30"
    assert "unavailable" in error["message"]
    record = Diagnosis.objects.get()
    diagnosis = response.json()["diagnosis"]
    assert diagnosis["id"] == str(record.pk)
    assert (diagnosis["status"], record.status) == ("failed", Diagnosis.Status.FAILED)
    assert diagnosis["failure"] == {
        "code": "UNAVAILABLE",
        "message": error["message"],
        "retryable": True,
    }
    assert diagnosis["links"]["retry"].endswith(f"/diagnoses/{record.pk}/retry/")
    assert len(stored_files(media)) == 2


@pytest.mark.parametrize(
    ("grpc_code", "status", "code", "retry_after"),
    [
        ("RESOURCE_EXHAUSTED", 429, "RESOURCE_EXHAUSTED", "5"),
        ("DEADLINE_EXCEEDED", 504, "DEADLINE_EXCEEDED", None),
        ("NOT_FOUND", 404, "NOT_FOUND", None),
        ("INTERNAL", 500, "INTERNAL", None),
        ("UNAUTHENTICATED", 502, "BAD_GATEWAY", None),
    ],
)
def test_each_gateway_status_maps_to_its_http_status_with_the_record(
    grpc_code: str,
    status: int,
    code: str,
    retry_after: str | None,
    api_alice: Client,
    gateway: ApiFakeGateway,
) -> None:
    gateway.fail_with = grpc_code
    response = upload(api_alice, jpeg())
    error = assert_error(response, status, code)
    assert response.get("Retry-After") == retry_after
    assert "too small" not in error["message"]  # the service's words only for bad input
    assert response.json()["diagnosis"]["status"] == "failed"
    assert Diagnosis.objects.count() == 1


def test_the_services_refusal_of_an_image_is_a_400_with_its_message(
    api_alice: Client, gateway: ApiFakeGateway
) -> None:
    gateway.fail_with = "INVALID_ARGUMENT"
    response = upload(api_alice, jpeg())
    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert error["message"] == "The model cannot use an image this small."
    assert response.json()["diagnosis"]["failure"]["retryable"] is False


def test_a_failed_record_is_retried_once_the_gateway_answers(
    api_alice: Client, gateway: ApiFakeGateway
) -> None:
    gateway.fail_with = "UNAVAILABLE"
    failed = upload(api_alice, jpeg()).json()["diagnosis"]
    gateway.fail_with = ""
    response = api_alice.post(failed["links"]["retry"])
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["top_label"]) == ("done", "melanoma")
    assert Diagnosis.objects.get().attempts == 2
    again = api_alice.post(failed["links"]["retry"])
    assert_error(again, 409, "FAILED_PRECONDITION", "NOT_RETRYABLE")


# --- GET diagnoses/ -------------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_list_holds_only_the_callers_records_newest_first_in_pages(
    api_alice: Client, alice: User, bob: User, media: Path
) -> None:
    mine = [diagnosed(alice, top) for top in ("melanoma", "common_nevus", "atypical_nevus")]
    diagnosed(bob)
    first = api_alice.get(f"{API}/diagnoses/", {"page_size": 2}).json()
    assert first["count"] == 3 and first["previous"] is None
    assert [r["id"] for r in first["results"]] == [str(mine[2].pk), str(mine[1].pk)]
    second = api_alice.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == [str(mine[0].pk)]
    assert second["next"] is None


def test_the_list_filters_by_label_and_date(api_alice: Client, alice: User, media: Path) -> None:
    melanoma = diagnosed(alice, "melanoma")
    diagnosed(alice, "common_nevus")
    today = melanoma.created_at.date().isoformat()
    found = api_alice.get(f"{API}/diagnoses/", {"label": "melanoma", "date_from": today}).json()
    assert [r["id"] for r in found["results"]] == [str(melanoma.pk)]
    none = api_alice.get(f"{API}/diagnoses/", {"date_to": "2000-01-01"}).json()
    assert none["count"] == 0
    bad = api_alice.get(f"{API}/diagnoses/", {"date_from": "2026-02-02", "date_to": "2026-01-01"})
    assert assert_error(bad, 400, "INVALID_ARGUMENT")["message"] == (
        "The start date (date_from) is after the end date (date_to)."
    )
    malformed = api_alice.get(f"{API}/diagnoses/", {"date_from": "soon"})
    error = assert_error(malformed, 400, "INVALID_ARGUMENT")
    assert error["message"].startswith("date_from: Date has wrong format.")
    assert list(error["fields"]) == ["date_from"]


def test_a_page_past_the_end_is_a_404(api_alice: Client, alice: User, media: Path) -> None:
    diagnosed(alice)
    error = assert_error(api_alice.get(f"{API}/diagnoses/", {"page": 9}), 404, "NOT_FOUND")
    assert error["message"] == "There is no page 9."


# --- one record: GET, DELETE, image ---------------------------------------------------------------


def test_alice_reads_her_record(api_alice: Client, alice: User, media: Path) -> None:
    record = diagnosed(alice)
    body = api_alice.get(f"{API}/diagnoses/{record.pk}/").json()
    assert (body["id"], body["top_label"], body["status"]) == (str(record.pk), "melanoma", "done")


@pytest.mark.postgres
def test_bob_gets_404_for_alices_record_image_retry_and_delete(
    api_bob: Client, alice: User, media: Path
) -> None:
    record = diagnosed(alice)
    base = f"{API}/diagnoses/{record.pk}"
    for response in (
        api_bob.get(f"{base}/"),
        api_bob.get(f"{base}/image/"),
        api_bob.get(f"{base}/thumbnail/"),
        api_bob.post(f"{base}/retry/"),
        api_bob.delete(f"{base}/"),
    ):
        assert_error(response, 404, "NOT_FOUND")
    assert api_bob.get(f"{API}/diagnoses/").json()["count"] == 0
    assert Diagnosis.objects.filter(pk=record.pk).exists()


def test_an_unknown_id_is_the_same_404(api_alice: Client, media: Path) -> None:
    response = api_alice.get(f"{API}/diagnoses/00000000-0000-4000-8000-000000000000/")
    assert assert_error(response, 404, "NOT_FOUND")["message"] == "No such diagnosis."


@pytest.mark.postgres
def test_deleting_removes_the_record_and_its_files(
    api_alice: Client, alice: User, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    record = diagnosed(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.delete(f"{API}/diagnoses/{record.pk}/")
    assert response.status_code == 204 and response.content == b""
    assert not Diagnosis.objects.exists() and stored_files(media) == []
    assert_error(api_alice.get(f"{API}/diagnoses/{record.pk}/"), 404, "NOT_FOUND")


def test_the_image_goes_to_its_owner_only_and_is_never_cached(
    api_alice: Client, alice: User, media: Path
) -> None:
    record = diagnosed(alice)
    response = api_alice.get(f"{API}/diagnoses/{record.pk}/image/", headers={"Accept": "image/*"})
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "no-store, private"
    assert response.getvalue()[:2] == b"\xff\xd8"
    thumbnail = api_alice.get(f"{API}/diagnoses/{record.pk}/thumbnail/")
    assert thumbnail.status_code == 200 and thumbnail["Cache-Control"] == "no-store, private"
    anonymous = Client().get(f"{API}/diagnoses/{record.pk}/image/")
    assert_error(anonymous, 401, "UNAUTHENTICATED")


# --- GET models/ ----------------------------------------------------------------------------------


def test_models_lists_what_the_gateway_routes_to(
    api_alice: Client, gateway: ApiFakeGateway
) -> None:
    response = api_alice.get(f"{API}/models/")
    assert response.status_code == 200
    mri, skin = response.json()["results"]
    assert (mri["disease"], mri["kind"], mri["available"], mri["model"]) == (
        "mri",
        "series",
        False,
        None,
    )
    assert mri["unavailable_reason"]
    assert (skin["disease"], skin["available"], skin["replica_count"]) == ("skin", True, 2)
    assert skin["model"]["labels"] == ["melanoma", "common_nevus", "atypical_nevus"]
    assert skin["model"]["demo_model"] is True and skin["model"]["notice"] == DEMO_MODEL_WARNING


def test_models_with_the_gateway_down_is_503_with_retry_after(
    api_alice: Client, gateway_down: None
) -> None:
    response = api_alice.get(f"{API}/models/")
    assert_error(response, 503, "UNAVAILABLE")
    assert response["Retry-After"] == "30"
