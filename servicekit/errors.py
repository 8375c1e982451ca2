"""Domain exceptions shared by every service; each names its gRPC status code once."""

from __future__ import annotations

from typing import ClassVar


class MedimgError(Exception):
    """Base of every error a caller should see; anything else is an internal error.

    `code` is the name of a gRPC status code (`grpc.StatusCode[code]`) and `reason`
    a stable machine-readable cause sent as `google.rpc.ErrorInfo`. This module
    imports neither grpc nor django so that domain code stays free of transports.
    Messages tell the caller what to fix and never carry patient data or paths.
    """

    code: ClassVar[str] = "INTERNAL"
    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason  # type: ignore[misc]  # per-instance refinement of the class default


# The reasons of an INVALID_ARGUMENT that mean "over a size limit": over HTTP every one of
# them is 413 Payload Too Large, whichever tier or service found it, and its message names
# the limit.
TOO_LARGE_REASONS: frozenset[str] = frozenset(
    {
        "IMAGE_TOO_LARGE",
        "IMAGE_TOO_MANY_PIXELS",
        "SERIES_TOO_LARGE",
        "SERIES_UPLOAD_TOO_LARGE",
        "SERIES_TOO_MANY_ENTRIES",
        "SERIES_IMAGE_TOO_LARGE",
    }
)


def is_too_large(reason: str) -> bool:
    """Returns True when a refusal's reason says the input is over a size limit."""
    return reason in TOO_LARGE_REASONS


class InvalidArgument(MedimgError):
    """The request itself is wrong; sending it again will not help."""

    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"


class InvalidImage(InvalidArgument):
    """An uploaded image is empty, unreadable, truncated, too large or of a refused type."""

    reason = "IMAGE_INVALID"


class InvalidSeries(InvalidArgument):
    """An uploaded DICOM series is malformed, unsafe or incomplete."""

    reason = "SERIES_INVALID"


class NotFound(MedimgError):
    """A named thing does not exist."""

    code = "NOT_FOUND"
    reason = "NOT_FOUND"


class UnknownDisease(NotFound):
    """No service is registered for the requested disease."""

    reason = "DISEASE_UNKNOWN"


class JobNotFound(NotFound):
    """No job has the requested name."""

    reason = "JOB_NOT_FOUND"


class FailedPrecondition(MedimgError):
    """The system is not in a state that allows the call (no model yet, a configured route, …)."""

    code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class AlreadyExists(MedimgError):
    """The name asked for is taken by something else."""

    code = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"


class QueueFull(MedimgError):
    """The service is saturated; the caller should back off and retry."""

    code = "RESOURCE_EXHAUSTED"
    reason = "QUEUE_FULL"


class Unavailable(MedimgError):
    """The service cannot answer now; retrying later may succeed."""

    code = "UNAVAILABLE"
    reason = "UNAVAILABLE"


class ModelNotReady(Unavailable):
    """The model has not finished loading or warming up."""

    reason = "MODEL_NOT_READY"


class BackendUnavailable(Unavailable):
    """The model server behind the service cannot be reached."""

    reason = "BACKEND_UNAVAILABLE"


class BackendTimeout(MedimgError):
    """The model did not answer within the caller's deadline."""

    code = "DEADLINE_EXCEEDED"
    reason = "BACKEND_TIMEOUT"


class Unauthenticated(MedimgError):
    """The caller sent no credentials or wrong ones."""

    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class PermissionDenied(MedimgError):
    """The caller is known but not allowed to do this."""

    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"
