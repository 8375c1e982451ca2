"""The API's one exception handler: every error is {"error": {"code", "message", "request_id"}}.

What raised it decides the HTTP status, through one table per source: DRF's own
exceptions carry theirs, domain errors (InvalidImage, ImageUrlRefused) and gateway
errors map through web.gateway_client's table of gRPC status codes, and anything else
is a 500 that says nothing about itself (its traceback goes to the log, with the
request id). `code` is fixed per HTTP status; `reason`, where present, says more
(IMAGE_TRUNCATED, IMAGE_URL_ADDRESS, …); `fields` carries per-field validation messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import set_rollback

from servicekit.errors import MedimgError, is_too_large
from servicekit.request_context import current_request_id
from web import gateway_client
from web.core.views import DATABASE_RETRY_AFTER_S
from web.gateway_client import GatewayError

logger = logging.getLogger(__name__)

# The error code of each HTTP status the API answers; gRPC's names where one fits.
ERROR_CODES: Final[Mapping[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "FAILED_PRECONDITION",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "BAD_GATEWAY",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
INTERNAL_MESSAGE: Final = "Something went wrong on our side. Please try again later."
NOT_FOUND_MESSAGE: Final = "Not found."


class ApiError(exceptions.APIException):
    """An error the API answers on purpose, with an optional reason and extra top-level data."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        reason: str = "",
        retry_after_s: int | None = None,
        extra: Mapping[str, Any] | None = None,
        rollback: bool = True,
    ) -> None:
        super().__init__(detail=message)
        self.status_code = status_code
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.extra = dict(extra or {})
        # False where the request saved something that must stay (a failed diagnosis).
        self.rollback = rollback


def error_code(http_status: int) -> str:
    """Returns the error code of an HTTP status."""
    if http_status in ERROR_CODES:
        return ERROR_CODES[http_status]
    return "INTERNAL" if http_status >= 500 else "INVALID_ARGUMENT"


def sentence(text: str) -> str:
    """Returns a message as a sentence: "the image is empty" -> "The image is empty."."""
    text = str(text).strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def request_id_of(request: HttpRequest | Request | None) -> str:
    """Returns the id RequestIdMiddleware gave the request, else the current one."""
    found = getattr(request, "request_id", "") if request is not None else ""
    return str(found or current_request_id())


def error_body(
    *,
    http_status: int,
    message: str,
    request_id: str,
    reason: str = "",
    fields: Any = None,
) -> dict[str, Any]:
    """Returns the one error body of the API."""
    error: dict[str, Any] = {
        "code": error_code(http_status),
        "message": message,
        "request_id": request_id,
    }
    if reason:
        error["reason"] = reason
    if fields:
        error["fields"] = fields
    return {"error": error}


@dataclass
class _Failure:
    """What the answer to one exception says: status, message, headers and extra data."""

    http_status: int
    message: str
    reason: str = ""
    retry_after_s: int | None = None
    fields: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    rollback: bool = True
    headers: dict[str, str] = field(default_factory=dict)


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """Returns the error response for any exception a view raised (DRF's EXCEPTION_HANDLER)."""
    request_id = request_id_of(context.get("request"))
    exc = _as_api_exception(exc)
    failure = _failure_of(exc, request_id)
    headers = dict(failure.headers)
    if failure.retry_after_s:
        headers["Retry-After"] = str(failure.retry_after_s)
    if failure.http_status == status.HTTP_401_UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", "Token")
    message = failure.message
    if failure.http_status >= 500 and not isinstance(exc, GatewayError | ApiError):
        message = INTERNAL_MESSAGE  # nothing about the failure reaches the caller
    if failure.rollback:
        set_rollback()
    body = error_body(
        http_status=failure.http_status,
        message=message,
        request_id=request_id,
        reason=failure.reason,
        fields=failure.fields,
    )
    return Response({**body, **failure.extra}, status=failure.http_status, headers=headers)


def _as_api_exception(exc: Exception) -> Exception:
    """Returns Django's and the database's exceptions as the API's; others as they are."""
    if isinstance(exc, Http404):
        return exceptions.NotFound(NOT_FOUND_MESSAGE)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return ApiError(
            "The request body is too large; send images as multipart uploads.",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):  # too many fields or files, a malformed body
        return ApiError("The request is not valid.", status_code=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is away (restarted, failed over): brief, and not the caller's doing.
        # The driver's message may quote SQL and its parameters; the type says enough.
        logger.warning("database unavailable (%s): answered 503", type(exc).__name__)
        return ApiError(
            "The service is briefly unavailable; try again in a few seconds.",
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            reason="DATABASE_UNAVAILABLE",
            retry_after_s=DATABASE_RETRY_AFTER_S,
        )
    return exc


def _failure_of(exc: Exception, request_id: str) -> _Failure:
    """Returns what to answer for exc, by the first of the API's kinds of error it is."""
    if isinstance(exc, GatewayError):
        return _Failure(exc.http_status, exc.message, exc.reason, exc.retry_after_s)
    if isinstance(exc, MedimgError):
        http_status = gateway_client.outcome_for_name(exc.code).http_status
        if exc.code == "INVALID_ARGUMENT" and is_too_large(exc.reason):
            http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        return _Failure(http_status, sentence(exc.message), exc.reason)
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return _Failure(exc.status_code, _first_message(fields), fields=fields)
    if isinstance(exc, ApiError):
        return _Failure(
            exc.status_code,
            str(exc.detail),
            exc.reason,
            exc.retry_after_s,
            extra=exc.extra,
            rollback=exc.rollback,
        )
    if isinstance(exc, exceptions.Throttled):
        # A rate of web/api/throttles.py: the same sentence whichever rate, with Retry-After.
        wait = getattr(exc, "wait", None)
        return _Failure(
            exc.status_code,
            "Too many requests. Wait the seconds Retry-After says and try again.",
            "RATE_LIMITED",
            max(1, int(wait + 0.999)) if wait else None,
        )
    if isinstance(exc, exceptions.APIException):
        wait = getattr(exc, "wait", None)
        auth_header = getattr(exc, "auth_header", None)
        return _Failure(
            exc.status_code,
            sentence(str(exc.detail)),
            retry_after_s=int(wait + 0.999) if wait else None,
            headers={"WWW-Authenticate": str(auth_header)} if auth_header else {},
        )
    logger.exception("API request failed", extra={"request_id": request_id})
    return _Failure(500, INTERNAL_MESSAGE)


def _first_message(fields: Any, path: str = "") -> str:
    """Returns the first validation message as one sentence: "image: This field is required."."""
    if isinstance(fields, dict):
        for key, value in fields.items():
            if value:
                inner = path if key == "non_field_errors" else (f"{path}.{key}" if path else key)
                return _first_message(value, inner)
    elif isinstance(fields, list) and fields:
        return _first_message(fields[0], path)
    text = sentence(str(fields)) or "The request is not valid."
    return f"{path}: {text}" if path else text
