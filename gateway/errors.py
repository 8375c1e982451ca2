"""Errors only the gateway raises; each names its gRPC status code once, like servicekit's."""

from __future__ import annotations

from servicekit.errors import MedimgError, UnknownDisease


class RouteNotRemovable(MedimgError):
    """The route comes from the configuration, so only a configuration change removes it."""

    code = "FAILED_PRECONDITION"
    reason = "ROUTE_CONFIGURED"


class StateNotWritable(MedimgError):
    """The gateway cannot save runtime routes, so it refuses to change them."""

    code = "FAILED_PRECONDITION"
    reason = "STATE_NOT_WRITABLE"


class WrongModelKind(UnknownDisease):
    """The disease is routed, but to a service of the other contract (image vs series)."""

    reason = "MODEL_KIND_MISMATCH"
