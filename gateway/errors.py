"""Errors only the gateway raises; each names its gRPC status code once, like servicekit's."""

from __future__ import annotations

from servicekit.errors import FailedPrecondition, Unavailable, UnknownDisease


class RouteNotRemovable(FailedPrecondition):
    """The route comes from the configuration, so only a configuration change removes it."""

    reason = "ROUTE_CONFIGURED"


class RouteConfigured(FailedPrecondition):
    """RegisterModel or Publish was asked to replace a route that the configuration sets."""

    reason = "ROUTE_CONFIGURED"


class RouteLearned(FailedPrecondition):
    """UnregisterModel was asked to remove a route the gateway learned from the trainer."""

    reason = "ROUTE_PUBLISHED"


class TrainerNotConfigured(Unavailable):
    """No route of kind trainer is configured, so TrainerService calls have nowhere to go."""

    reason = "TRAINER_NOT_CONFIGURED"


class StateNotWritable(FailedPrecondition):
    """The gateway cannot save runtime routes, so it refuses to change them."""

    reason = "STATE_NOT_WRITABLE"


class WrongModelKind(UnknownDisease):
    """The disease is routed, but to a service of the other contract (image vs series)."""

    reason = "MODEL_KIND_MISMATCH"
