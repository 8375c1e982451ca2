"""Domain exceptions shared by every service; each names its gRPC status code once."""

from __future__ import annotations

from typing import Any, ClassVar


class MedimgError(Exception):
    """Base of every error a caller should see; anything else is an internal error.

    `code` is the name of a gRPC status code (`grpc.StatusCode[code]`) and `reason`
    a stable machine-readable cause sent as `google.rpc.ErrorInfo`. This module
    imports neither grpc nor django so that domain code stays free of transports.
    Messages tell the caller what to fix and never carry patient data or paths.
    """

    code: ClassVar[str] = "INTERNAL"
    reason: ClassVar[str] = "INTERNAL"

    def __init_subclass__(
        cls, *, code: str | None = None, reason: str | None = None, **kwargs: Any
    ) -> None:
        """Takes a subclass's code and reason as class keywords; what it leaves out is inherited.

        One line declares an error, `class JobNotFound(NotFound, reason="JOB_NOT_FOUND")`,
        so a table of errors is a list of names, not a repeated class body.
        """
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if reason is not None:
            cls.reason = reason

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


class InvalidArgument(MedimgError, code="INVALID_ARGUMENT", reason="INVALID_ARGUMENT"):
    """The request itself is wrong; sending it again will not help."""


class InvalidImage(InvalidArgument, reason="IMAGE_INVALID"):
    """An uploaded image is empty, unreadable, truncated, too large or of a refused type."""


class InvalidSeries(InvalidArgument, reason="SERIES_INVALID"):
    """An uploaded DICOM series is malformed, unsafe or incomplete."""


class NotFound(MedimgError, code="NOT_FOUND", reason="NOT_FOUND"):
    """A named thing does not exist."""


class UnknownDisease(NotFound, reason="DISEASE_UNKNOWN"):
    """No service is registered for the requested disease."""


class JobNotFound(NotFound, reason="JOB_NOT_FOUND"):
    """No job has the requested name."""


class FailedPrecondition(MedimgError, code="FAILED_PRECONDITION", reason="FAILED_PRECONDITION"):
    """The system is not in a state that allows the call (no model yet, a configured route, …)."""


class AlreadyExists(MedimgError, code="ALREADY_EXISTS", reason="ALREADY_EXISTS"):
    """The name asked for is taken by something else."""


class QueueFull(MedimgError, code="RESOURCE_EXHAUSTED", reason="QUEUE_FULL"):
    """The service is saturated; the caller should back off and retry."""


class Unavailable(MedimgError, code="UNAVAILABLE", reason="UNAVAILABLE"):
    """The service cannot answer now; retrying later may succeed."""


class ModelNotReady(Unavailable, reason="MODEL_NOT_READY"):
    """The model has not finished loading or warming up."""


class BackendUnavailable(Unavailable, reason="BACKEND_UNAVAILABLE"):
    """The model server behind the service cannot be reached."""


class BackendTimeout(MedimgError, code="DEADLINE_EXCEEDED", reason="BACKEND_TIMEOUT"):
    """The model did not answer within the caller's deadline."""


class Unauthenticated(MedimgError, code="UNAUTHENTICATED", reason="UNAUTHENTICATED"):
    """The caller sent no credentials or wrong ones."""


class PermissionDenied(MedimgError, code="PERMISSION_DENIED", reason="PERMISSION_DENIED"):
    """The caller is known but not allowed to do this."""
