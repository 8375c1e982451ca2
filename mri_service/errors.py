"""Domain exceptions of the MRI service; imports neither grpc nor django."""

from __future__ import annotations

from servicekit.errors import InvalidSeries, ModelNotReady


class SeriesRejected(InvalidSeries):
    """The uploaded series cannot be analysed; the message names the offending entry."""


class ModelMismatch(ModelNotReady):
    """The weights on disk do not fit what the service expects (channels, input size)."""
