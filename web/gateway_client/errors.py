"""What a failed gateway call means to the web tier: one table of gRPC status to HTTP outcome."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import grpc

from servicekit.errors import is_too_large
from servicekit.status import error_reason

logger = logging.getLogger("web.gateway_client")


@dataclass(frozen=True)
class Outcome:
    """What a gRPC status means to the web tier: the HTTP status and what to tell a person."""

    http_status: int
    message: str
    retry_after_s: int | None = None
    # True where the gateway's own message tells the person what to fix (bad input).
    shows_details: bool = False
    # True where sending the same request again later may succeed.
    retryable: bool = False


_INTERNAL = Outcome(
    500, "Something went wrong on our side. Please try again later.", retryable=True
)
_MISCONFIGURED = Outcome(
    502, "The diagnosis service answered unexpectedly. Please try again later.", retryable=True
)

_S = grpc.StatusCode
_BUSY = "The diagnosis service is busy. Please try again in a few seconds."
_DOWN = "The diagnosis service is unavailable right now. Please try again in a minute."
_SLOW = "The diagnosis took too long. Please try again."

# The one table of gRPC status to HTTP status and page message for the whole web tier.
STATUS_OUTCOMES: Final[dict[grpc.StatusCode, Outcome]] = {
    _S.INVALID_ARGUMENT: Outcome(400, "The upload could not be used.", shows_details=True),
    _S.NOT_FOUND: Outcome(404, "This kind of diagnosis is not offered right now."),
    _S.RESOURCE_EXHAUSTED: Outcome(429, _BUSY, retry_after_s=5, retryable=True),
    _S.UNAVAILABLE: Outcome(503, _DOWN, retry_after_s=30, retryable=True),
    _S.DEADLINE_EXCEEDED: Outcome(504, _SLOW, retryable=True),
    **dict.fromkeys((_S.INTERNAL, _S.UNKNOWN, _S.DATA_LOSS), _INTERNAL),
    # The rest mean the web tier and the gateway disagree (credentials, contract, version):
    # never the person's fault, and not something the web tier itself did wrong.
    **dict.fromkeys(
        (
            _S.CANCELLED,
            _S.ALREADY_EXISTS,
            _S.PERMISSION_DENIED,
            _S.FAILED_PRECONDITION,
            _S.ABORTED,
            _S.OUT_OF_RANGE,
            _S.UNIMPLEMENTED,
            _S.UNAUTHENTICATED,
        ),
        _MISCONFIGURED,
    ),
}


_TRAINER_DOWN = "The trainer is unavailable right now. Please try again in a minute."
_TRAINER_CONFLICT = Outcome(409, "This cannot be done right now.", shows_details=True)

# The trainer's calls: what goes wrong there is mostly the person's to fix (too few
# examples, a disease name in use), so its own message is shown for those statuses.
TRAINER_OUTCOMES: Final[dict[grpc.StatusCode, Outcome]] = {
    **STATUS_OUTCOMES,
    _S.INVALID_ARGUMENT: Outcome(400, "The request could not be used.", shows_details=True),
    _S.NOT_FOUND: Outcome(404, "The trainer does not know this project.", shows_details=True),
    _S.FAILED_PRECONDITION: _TRAINER_CONFLICT,
    _S.ALREADY_EXISTS: _TRAINER_CONFLICT,
    _S.RESOURCE_EXHAUSTED: Outcome(
        429,
        "The trainer is busy. Please try again in a few seconds.",
        retry_after_s=5,
        shows_details=True,
        retryable=True,
    ),
    _S.UNAVAILABLE: Outcome(503, _TRAINER_DOWN, retry_after_s=30, retryable=True),
    _S.DEADLINE_EXCEEDED: Outcome(
        504, "The trainer took too long. Please try again.", retryable=True
    ),
}


def outcome_for(
    code: grpc.StatusCode, outcomes: Mapping[grpc.StatusCode, Outcome] = STATUS_OUTCOMES
) -> Outcome:
    """Returns the web tier's outcome of a gRPC status code (diagnosis calls by default)."""
    return outcomes.get(code, _INTERNAL)


def outcome_for_name(name: str) -> Outcome:
    """Returns the outcome of a status code by its name ("UNAVAILABLE"), as records keep it."""
    code = grpc.StatusCode.__members__.get(name)
    return _INTERNAL if code is None else outcome_for(code)


class GatewayError(Exception):
    """A call to the gateway ended with a status other than OK.

    `code` is the gRPC status name ("UNAVAILABLE"), `reason` the ErrorInfo reason when the
    services sent one ("IMAGE_TRUNCATED"), `details` the gateway's own message; `message`
    is what a person may be shown, `http_status` and `retry_after_s` what HTTP answers.
    """

    def __init__(
        self,
        status: grpc.StatusCode,
        details: str,
        *,
        reason: str,
        request_id: str,
        outcomes: Mapping[grpc.StatusCode, Outcome] = STATUS_OUTCOMES,
    ):
        super().__init__(f"{status.name}: {details}")
        self.status = status
        self.code = status.name
        self.details = details
        self.reason = reason
        self.request_id = request_id
        self.outcome = outcome_for(status, outcomes)
        # One status per kind of refusal: "too large" is 413 wherever it was found.
        too_large = status == grpc.StatusCode.INVALID_ARGUMENT and is_too_large(reason)
        self.http_status = 413 if too_large else self.outcome.http_status
        self.retry_after_s = self.outcome.retry_after_s
        self.retryable = self.outcome.retryable

    @property
    def message(self) -> str:
        """Returns the message a person is shown: the gateway's for bad input, else friendly."""
        if self.outcome.shows_details and self.details:
            return self.details[:1].upper() + self.details[1:].rstrip(".") + "."
        return self.outcome.message


def call_failure(
    exc: grpc.RpcError,
    request_id: str,
    method: str,
    outcomes: Mapping[grpc.StatusCode, Outcome] = STATUS_OUTCOMES,
) -> GatewayError:
    """Returns the GatewayError for a failed call and logs it (ids only, never content)."""
    if isinstance(exc, grpc.Call):
        status, details, reason = exc.code(), exc.details() or "", error_reason(exc)
    else:
        status, details, reason = grpc.StatusCode.UNKNOWN, "", ""
    logger.warning(
        "gateway %s failed: %s %s",
        method,
        status.name,
        reason or "-",
        extra={"request_id": request_id, "grpc_code": status.name, "reason": reason},
    )
    return GatewayError(status, details, reason=reason, request_id=request_id, outcomes=outcomes)
