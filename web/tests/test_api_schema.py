"""The OpenAPI schema at /api/v1/schema/: valid OpenAPI 3, every endpoint, and the API keeps it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from drf_spectacular.validation import validate_schema

from web.accounts.models import User
from web.tests.api_support import token_client

API = "/api/v1"
OPERATIONS = {
    ("/api/v1/auth/token/", "post"): "auth_token_create",
    ("/api/v1/diagnoses/", "get"): "diagnoses_list",
    ("/api/v1/diagnoses/", "post"): "diagnoses_create",
    ("/api/v1/diagnoses/{diagnosis_id}/", "get"): "diagnoses_retrieve",
    ("/api/v1/diagnoses/{diagnosis_id}/", "delete"): "diagnoses_destroy",
    ("/api/v1/diagnoses/{diagnosis_id}/retry/", "post"): "diagnoses_retry",
    ("/api/v1/diagnoses/{diagnosis_id}/image/", "get"): "diagnoses_image",
    ("/api/v1/diagnoses/{diagnosis_id}/thumbnail/", "get"): "diagnoses_thumbnail",
    ("/api/v1/models/", "get"): "models_list",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = Client().get(f"{API}/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return dict(response.json())


def test_the_schema_is_valid_openapi_3_and_public(schema: dict[str, Any]) -> None:
    # Against the OpenAPI 3.0 JSON Schema that drf-spectacular ships.
    validate_schema(schema)  # type: ignore[no-untyped-call]
    assert schema["openapi"].startswith("3.")
    assert "not for clinical use" in schema["info"]["description"]


def test_the_schema_lists_every_endpoint_and_nothing_else(schema: dict[str, Any]) -> None:
    found = {
        (path, method): operation["operationId"]
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    series = {key: value for key, value in found.items() if key[0].startswith("/api/v1/series/")}
    assert {k: v for k, v in found.items() if k not in series} == OPERATIONS


def test_the_schema_says_how_to_authenticate_and_what_errors_look_like(
    schema: dict[str, Any],
) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"]["type"] == "apiKey" and "cookieAuth" in schemes
    create = schema["paths"]["/api/v1/diagnoses/"]["post"]
    assert set(create["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert create["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FailedDiagnosis"
    }
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message", "request_id"}
    listing = schema["paths"]["/api/v1/diagnoses/"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"page", "page_size", "label", "date_from"}
    assert "security" not in schema["paths"]["/api/v1/auth/token/"]["post"]


def test_the_schema_is_served_as_yaml_too(db: None) -> None:
    response = Client().get(f"{API}/schema/")
    assert response.status_code == 200
    assert yaml.safe_load(response.content)["info"]["title"] == "medimg API"


def test_generating_the_schema_gives_no_warnings(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/diagnoses/" in out.read_text()


@pytest.mark.skipif(
    "drf_spectacular_sidecar" not in settings.INSTALLED_APPS,
    reason="drf-spectacular-sidecar is not installed: no docs page",
)
def test_the_docs_page_serves_swagger_ui_from_local_static_files(db: None) -> None:
    response = Client().get(f"{API}/docs/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower() and "//unpkg" not in page
    assert f"{API}/schema/" in page


def test_the_schema_describes_a_series_study_and_each_slices_dicom_images(
    schema: dict[str, Any],
) -> None:
    components = schema["components"]["schemas"]
    job = components["SeriesJob"]
    assert "study" in job["required"] and job["properties"]["study"]["nullable"]
    assert job["properties"]["study"]["allOf"] == [{"$ref": "#/components/schemas/Study"}]
    study = components["Study"]
    assert study["properties"]["phases"]["items"] == {"$ref": "#/components/schemas/SelectedPhase"}
    assert study["properties"]["unused_series"]["items"] == {
        "$ref": "#/components/schemas/UnusedSeries"
    }
    assert {"series_description", "series_number", "reason"} <= set(
        components["UnusedSeries"]["required"]
    )
    assert {"path", "reason"} == set(components["SkippedFile"]["required"])
    assert {"series_description", "series_number", "image_count"} <= set(
        components["SelectedPhase"]["required"]
    )
    slice_ = components["Slice"]
    assert {"index", "instance_number", "images"} <= set(slice_["required"])
    assert slice_["properties"]["instance_number"]["nullable"]
    assert set(components["SliceImage"]["required"]) == {
        "phase",
        "sop_instance_uid",
        "instance_number",
        "position_mm",
    }


# --- what the schema states and the API holds to (test_api_contract.py checks it all, live)


def test_the_schema_states_formats_media_types_and_the_date_rule(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    image_url = components["DiagnosisFromUrlRequest"]["properties"]["image_url"]
    assert image_url["format"] == "uri" and image_url["pattern"].startswith("^[Hh][Tt][Tt][Pp]")
    create = schema["paths"]["/api/v1/diagnoses/"]["post"]["requestBody"]["content"]
    assert create["multipart/form-data"]["encoding"] == {
        "image": {"contentType": "image/jpeg, image/png"}
    }
    series = schema["paths"]["/api/v1/series/"]["post"]["requestBody"]["content"]
    assert series["multipart/form-data"]["encoding"] == {
        "series": {"contentType": "application/zip"}
    }
    listing = schema["paths"]["/api/v1/diagnoses/"]["get"]
    parameters = {p["name"]: p for p in listing["parameters"]}
    assert parameters["page"]["schema"] == {"type": "integer", "minimum": 1}
    assert parameters["page_size"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
    }
    for name in ("date_from", "date_to"):
        assert parameters[name]["schema"] == {"type": "string", "format": "date"}
        assert "400 INVALID_ARGUMENT" in parameters[name]["description"]
    assert "400" in listing["responses"]


def test_every_operation_documents_the_rate_limit_and_the_database_being_away(
    schema: dict[str, Any],
) -> None:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert {"429", "503"} <= set(operation["responses"]), (method, path)
            if operation.get("security") != []:
                assert "401" in operation["responses"], (method, path)


def test_the_schema_links_the_created_ids_to_the_operations_that_take_them(
    schema: dict[str, Any],
) -> None:
    operation_ids = {
        operation["operationId"]
        for methods in schema["paths"].values()
        for operation in methods.values()
    }
    created = schema["paths"]["/api/v1/diagnoses/"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in created.values()} == {
        "diagnoses_retrieve",
        "diagnoses_destroy",
        "diagnoses_retry",
        "diagnoses_image",
        "diagnoses_thumbnail",
    }
    assert all(
        link["parameters"] == {"diagnosis_id": "$response.body#/id"} for link in created.values()
    )
    queued = schema["paths"]["/api/v1/series/"]["post"]["responses"]["202"]["links"]
    assert {link["operationId"] for link in queued.values()} == {
        "series_retrieve",
        "series_sr",
        "series_kos",
        "series_retry",
    }
    assert all(link["parameters"] == {"job_id": "$response.body#/id"} for link in queued.values())
    assert {link["operationId"] for link in {**created, **queued}.values()} <= operation_ids


@pytest.mark.parametrize(
    "query",
    [
        {"page": "0"},
        {"page": "-1"},
        {"page": "last"},
        {"page": "1.0"},
        {"page_size": "0"},
        {"page_size": "101"},
        {"page_size": "null"},
        {"page_size": ""},
        {"page_size": " 5"},
        {"page_size": "+5"},
        {"date_to": ""},
        {"date_from": "2026-1-5"},
        {"date_from": "20260105"},
        {"date_from": "2026-W02-1"},
        {"date_from": "2026-02-02", "date_to": "2026-01-01"},
    ],
)
def test_a_list_query_the_schema_refuses_the_api_refuses_with_a_400(
    alice: User, query: dict[str, str]
) -> None:
    response = token_client(alice).get(f"{API}/diagnoses/", query)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert set(error["fields"]) <= {*query, "non_field_errors"}


def test_a_list_query_the_schema_allows_the_api_answers(alice: User) -> None:
    client = token_client(alice)
    for query in (
        {"page": "1", "page_size": "1"},
        {"page_size": "100"},
        {"date_from": "2026-01-05", "date_to": "2026-01-05", "label": ""},
    ):
        response = client.get(f"{API}/diagnoses/", query)
        assert response.status_code == 200, (query, response.content)
    past_the_end = client.get(f"{API}/diagnoses/", {"page": "2"})
    assert past_the_end.status_code == 404
    assert past_the_end.json()["error"]["code"] == "NOT_FOUND"


def test_any_path_under_the_api_is_answered_in_its_error_shape(alice: User) -> None:
    client = token_client(alice)
    for path in ("/api/v1/nothing/", "/api/v1/series/%0A%C3%81/kos", "/api/v1/diagnoses/%0A/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "NOT_FOUND"
