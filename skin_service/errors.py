"""Errors of the skin service beyond servicekit's table; imports neither grpc nor django."""

from __future__ import annotations

from servicekit.errors import MedimgError, ModelNotReady


class BackendRejected(MedimgError):
    """The model server refused a request the service built: they disagree on the model.

    Sending the same image again will not help and the caller did nothing wrong, so this
    is an internal error with a message an operator can act on.
    """

    code = "INTERNAL"
    reason = "BACKEND_REJECTED"


class ModelMismatch(ModelNotReady):
    """The model found does not match what the service expects (labels, signature, size)."""

    reason = "MODEL_MISMATCH"
