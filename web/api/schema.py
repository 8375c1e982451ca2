"""What the schema states beyond drf-spectacular's decorators: links, errors of every operation.

A link says where a response's id may be used next (OpenAPI 3 `links`): the record that
POST diagnoses/ creates is read, deleted, retried and downloaded by its `id`, and so is
the series job that POST series/ queues. Clients and generated SDKs follow them, and the
contract test (web/tests/test_api_contract.py) walks them to reach the `{id}` operations
with real ids. Two errors can answer any operation, whatever it does: 429 (a rate of
web/api/throttles.py, which ApiView gives every operation) and 503 (the database away);
they are added wherever an operation does not document its own. Both hooks are
POSTPROCESSING_HOOKS entries (web/api/conf.py).
"""

from __future__ import annotations

from typing import Any, Final

# operationId: {status: {link name: (target operationId, its path parameter, description)}}.
LINKS: Final[dict[str, dict[str, dict[str, tuple[str, str, str]]]]] = {
    "diagnoses_create": {
        "201": {
            "GetDiagnosis": ("diagnoses_retrieve", "diagnosis_id", "Read the new record."),
            "DeleteDiagnosis": ("diagnoses_destroy", "diagnosis_id", "Delete it."),
            "RetryDiagnosis": ("diagnoses_retry", "diagnosis_id", "Diagnose it again."),
            "GetDiagnosisImage": ("diagnoses_image", "diagnosis_id", "Its stored image."),
            "GetDiagnosisThumbnail": ("diagnoses_thumbnail", "diagnosis_id", "Its thumbnail."),
        },
    },
    "diagnoses_retry": {
        "200": {"GetDiagnosis": ("diagnoses_retrieve", "diagnosis_id", "Read the record.")},
    },
    "series_create": {
        "202": {
            "GetSeries": ("series_retrieve", "job_id", "Poll the job."),
            "GetSeriesReport": ("series_sr", "job_id", "Its DICOM SR, once done."),
            "GetSeriesKeyImages": ("series_kos", "job_id", "Its DICOM KOS, once done."),
            "RetrySeries": ("series_retry", "job_id", "Queue it again, once it failed."),
        },
    },
    "series_retry": {
        "202": {"GetSeries": ("series_retrieve", "job_id", "Poll the job.")},
    },
}


ERROR_REF: Final = "#/components/schemas/Error"
# Answers any operation may give, whatever it does (web/api/README.md, "Rates" and "Errors").
COMMON_ERRORS: Final[dict[str, str]] = {
    "429": "Too many requests: one of the API's rates (reason RATE_LIMITED) or, where "
    "the operation says so, its own; see Retry-After.",
    "503": "The service is briefly unavailable (the database is away: reason "
    "DATABASE_UNAVAILABLE); see Retry-After.",
}


def _operations(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for methods in result.get("paths", {}).values()
        for operation in methods.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def add_common_errors(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Returns the schema with COMMON_ERRORS on every operation that lacks them (a hook)."""
    for operation in _operations(result).values():
        responses = operation.setdefault("responses", {})
        for status, description in COMMON_ERRORS.items():
            responses.setdefault(
                status,
                {
                    "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
                    "description": description,
                },
            )
    return result


def add_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Returns the schema with LINKS added to its responses (a POSTPROCESSING_HOOKS hook).

    Only between operations the schema has (a checkout without the series app has no
    series links); a source operation without the response named is an error here, not a
    link silently lost.
    """
    operations = _operations(result)
    for source, by_status in LINKS.items():
        if source not in operations:
            continue
        for status, links in by_status.items():
            response = operations[source]["responses"][status]
            response["links"] = {
                name: {
                    "operationId": target,
                    "parameters": {parameter: "$response.body#/id"},
                    "description": description,
                }
                for name, (target, parameter, description) in links.items()
                if target in operations
            }
    return result
