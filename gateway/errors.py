"""Errors only the gateway raises; each names its gRPC status code once, like servicekit's."""

from __future__ import annotations

from servicekit.errors import FailedPrecondition, Unavailable, UnknownDisease


class RouteNotRemovable(FailedPrecondition, reason="ROUTE_CONFIGURED"):
    """The route comes from the configuration, so only a configuration change removes it."""


class RouteConfigured(FailedPrecondition, reason="ROUTE_CONFIGURED"):
    """RegisterModel or Publish was asked to replace a route that the configuration sets."""


class RouteLearned(FailedPrecondition, reason="ROUTE_PUBLISHED"):
    """UnregisterModel was asked to remove a route the gateway learned from the trainer."""


class TrainerNotConfigured(Unavailable, reason="TRAINER_NOT_CONFIGURED"):
    """No route of kind trainer is configured, so TrainerService calls have nowhere to go."""


class StateNotWritable(FailedPrecondition, reason="STATE_NOT_WRITABLE"):
    """The gateway cannot save runtime routes, so it refuses to change them."""


class WrongModelKind(UnknownDisease, reason="MODEL_KIND_MISMATCH"):
    """The disease is routed, but to a service of the other contract (image vs series)."""
