"""The gateway's core: which route serves a call, runtime (un)registration, publications, admin."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable

from gateway.catalog import ModelCatalog
from gateway.errors import (
    RouteConfigured,
    StateNotWritable,
    TrainerNotConfigured,
    WrongModelKind,
)
from gateway.published import TrainerPublications
from gateway.registry import (
    Route,
    RouteError,
    RouteKind,
    RouteTable,
    StateStore,
    validate_disease,
)
from gateway.settings import GatewaySettings
from gateway.upstream import ChannelPool, Metadata, Upstream, upstream_timeout
from servicekit.diseases import DISEASE_RULE
from servicekit.errors import InvalidArgument, Unauthenticated, UnknownDisease
from servicekit.request_context import outgoing_metadata
from servicekit.settings import SettingsError

logger = logging.getLogger(__name__)

_SERVICE_OF_KIND = {
    RouteKind.IMAGE: "DiagnosisService",
    RouteKind.SERIES: "SeriesAnalysisService",
}


def check_admin(expected_token: str | None, authorization: str | None) -> None:
    """Lets the call through when no token is configured or it carries "Bearer <token>".

    Raises:
        Unauthenticated: the token is missing or wrong.
    """
    if expected_token is None:
        return
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("this call needs metadata 'authorization: Bearer <admin token>'")
    if not hmac.compare_digest(token.strip().encode(), expected_token.encode()):
        raise Unauthenticated("the admin token is not valid")


class Router:
    """Holds the routes, the upstream channels, the model catalog and the trainer's models.

    It is also the server's lifecycle: `start` reads the trainer's published models and
    starts polling them, `stop` stops that and closes the upstream channels.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        metadata: Callable[[], Metadata] = outgoing_metadata,
    ) -> None:
        """Loads the runtime routes; raises SettingsError when their file is unreadable."""
        self.settings = settings
        store = StateStore(settings.state_file)
        try:
            self.table = RouteTable(settings.routes, store)
        except RouteError as exc:
            raise SettingsError(
                f"GATEWAY_STATE_DIR: the saved routes in {str(store.path)!r} are unusable: {exc}"
            ) from None
        self.pool = ChannelPool(
            max_message_bytes=settings.server.max_message_bytes, tls=settings.upstream_tls
        )
        self.upstream = Upstream(self.pool, settings.retry, metadata)
        self.catalog = ModelCatalog(
            self.upstream, ttl_s=settings.model_info_ttl_s, timeout_s=settings.model_info_timeout_s
        )
        self.publications = TrainerPublications(
            self.table,
            self.upstream,
            period_s=settings.trainer_poll_s,
            timeout_s=settings.model_info_timeout_s,
        )
        self._changes = asyncio.Lock()

    async def start(self) -> None:
        """Reads the trainer's published models (bounded by a timeout) and logs the routes."""
        await self.publications.start()
        for route in self.table.routes():
            logger.info(
                "route %s (%s, %s) -> %s",
                route.disease,
                route.kind.value,
                self._origin(route.disease),
                ", ".join(route.addresses),
            )
        if not self.table.routes():
            logger.warning("no routes: set GATEWAY_ROUTES or GATEWAY_REGISTRY_FILE")

    async def stop(self) -> None:
        """Stops polling the trainer and closes the upstream channels."""
        await self.publications.stop()
        await self.pool.close()

    def _origin(self, disease: str) -> str:
        if self.table.is_runtime(disease):
            return "runtime"
        return "configured" if self.table.is_configured(disease) else "published by the trainer"

    def deadline(self, time_remaining: float | None, *, upload: bool = False) -> float:
        """Returns the upstream deadline of a call with time_remaining (None: the caller set none).

        Streamed uploads (series, examples) get the longer default.
        """
        settings = self.settings
        default_s = settings.series_deadline_s if upload else settings.default_deadline_s
        return upstream_timeout(time_remaining, default_s=default_s, max_s=settings.max_deadline_s)

    def route(self, disease: str, kind: RouteKind) -> Route:
        """Returns the route serving disease with the contract of kind.

        Raises:
            InvalidArgument: the disease is empty or not a valid name.
            UnknownDisease: no route of that kind serves the disease.
        """
        route = self.table.get(disease)
        if route is not None and route.kind is kind:
            return route
        if route is not None and route.kind is RouteKind.TRAINER:
            route = None  # the trainer's route is not a disease: unknown like any other name
        if not disease:
            raise InvalidArgument(f"disease is required; {self._known(kind)}")
        if route is not None:
            raise WrongModelKind(
                f"disease {disease!r} is a {route.kind.value} model: call "
                f"medimg.v1.{_SERVICE_OF_KIND[route.kind]} for it; {self._known(kind)}"
            )
        try:
            validate_disease(disease)
        except RouteError:
            raise InvalidArgument(f"disease must be {DISEASE_RULE}") from None
        raise UnknownDisease(f"no model is registered for disease {disease!r}; {self._known(kind)}")

    def trainer_route(self) -> Route:
        """Returns the route of the trainer; raises TrainerNotConfigured when there is none."""
        route = self.table.trainer()
        if route is None:
            raise TrainerNotConfigured(
                "the trainer is not configured on this gateway: add a route of kind trainer, "
                "e.g. GATEWAY_ROUTES='trainer=trainer@127.0.0.1:50063'"
            )
        return route

    async def register(self, route: Route) -> None:
        """Adds or replaces a runtime route, saved before it takes effect.

        Raises:
            RouteConfigured: the configuration routes the disease; a runtime route would
                silently shadow it (and, say, let a user-trained model answer for skin).
        """
        if self.table.is_configured(route.disease):
            raise RouteConfigured(
                f"disease {route.disease!r} is routed by the gateway's configuration "
                "(GATEWAY_REGISTRY_FILE or GATEWAY_ROUTES) and cannot be replaced at run time; "
                "choose another disease name"
            )
        await self._change(lambda: self.table.register(route))
        logger.info(
            "registered %s (%s) -> %s", route.disease, route.kind.value, ", ".join(route.addresses)
        )

    def check_publishable(self, disease: str) -> None:
        """Refuses, before the trainer is asked, a disease that another route serves.

        Raises:
            RouteConfigured: the configuration routes the disease (a trainer publication
                never replaces a configured route), or RegisterModel routed it to
                another service than the trainer (the runtime route would win, so the
                published model would never answer).
        """
        if self.table.is_configured(disease):
            raise RouteConfigured(
                f"disease {disease!r} is routed by the gateway's configuration "
                "(GATEWAY_REGISTRY_FILE or GATEWAY_ROUTES), so the trainer cannot publish "
                "under it; choose another disease name"
            )
        runtime = self.table.runtime_route(disease)
        trainer = self.table.trainer()
        if runtime is not None and (trainer is None or runtime.addresses != trainer.addresses):
            raise RouteConfigured(
                f"disease {disease!r} is routed to another service by RegisterModel, so the "
                "trainer cannot publish under it; choose another disease name"
            )

    async def unregister(self, disease: str) -> None:
        """Removes a runtime route; raises UnknownDisease, RouteNotRemovable or RouteLearned."""
        await self._change(lambda: self.table.unregister(disease))
        logger.info("unregistered %s", disease)

    async def _change(self, change: Callable[[], None]) -> None:
        """Applies one change to the runtime routes (saved first), one change at a time."""
        async with self._changes:
            try:
                await asyncio.to_thread(change)
            except OSError as exc:
                logger.error("cannot save routes to %s: %s", self.settings.state_file, exc)
                raise StateNotWritable(
                    "the gateway cannot save routes; give it a writable GATEWAY_STATE_DIR"
                ) from None
            self._release_unused_channels()

    def _release_unused_channels(self) -> None:
        in_use = {address for route in self.table.routes() for address in route.addresses}
        self.pool.retain(in_use, grace_s=self.settings.max_deadline_s)

    def _known(self, kind: RouteKind) -> str:
        names = self.table.diseases(kind)
        return f"known {kind.value} diseases: {', '.join(names) if names else 'none'}"
