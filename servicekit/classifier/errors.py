"""The errors an image classifier adds to servicekit's table; imports neither grpc nor django."""

from __future__ import annotations

from servicekit.errors import MedimgError, ModelNotReady


class ModelMismatch(ModelNotReady, reason="MODEL_MISMATCH"):
    """The model found does not match what the service expects (labels, signature, size).

    UNAVAILABLE rather than INTERNAL: a caller may retry once an operator has put the
    right model in place, and health stays NOT_SERVING meanwhile.
    """


class BackendRejected(MedimgError, code="INTERNAL", reason="BACKEND_REJECTED"):
    """The model server refused a request the service built: they disagree on the model.

    Sending the same image again will not help and the caller did nothing wrong, so this
    is an internal error with a message an operator can act on.
    """
