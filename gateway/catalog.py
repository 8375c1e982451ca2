"""What each route's model says about itself, fetched concurrently and cached for a while."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from medimg.v1 import model_registry_pb2

from gateway import convert
from gateway.registry import Route, RouteKind
from gateway.upstream import Upstream

logger = logging.getLogger(__name__)

GET_MODEL_INFO = "/medimg.v1.DiagnosisService/GetModelInfo"
GET_SERIES_MODEL_INFO = "/medimg.v1.SeriesAnalysisService/GetSeriesModelInfo"
_MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class _Entry:
    expires: float
    task: asyncio.Task[model_registry_pb2.RegisteredModel]


class ModelCatalog:
    """Descriptions of the routed models, each refreshed when older than ttl_s.

    Callers arriving while a description is being fetched share that one fetch.
    An unreachable service is described as unavailable, with the reason, and is
    asked again once its entry expires.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        ttl_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._entries: dict[Route, _Entry] = {}

    async def describe(
        self, route: Route, *, refresh: bool = False
    ) -> model_registry_pb2.RegisteredModel:
        """Returns the route's description, fetching it when missing, expired or refresh."""
        now = self._clock()
        entry = self._entries.get(route)
        if refresh or entry is None or (entry.task.done() and now >= entry.expires):
            entry = _Entry(now + self._ttl_s, asyncio.ensure_future(self._fetch(route)))
            self._entries[route] = entry
        # Shielded: one caller giving up must not cancel the fetch the others wait for.
        return await asyncio.shield(entry.task)

    async def list(
        self, routes: Sequence[Route], *, known: Sequence[Route] | None = None
    ) -> list[model_registry_pb2.RegisteredModel]:
        """Returns the descriptions of routes, in their order, asking stale ones concurrently.

        Cached descriptions of routes that are not among `known` (by default `routes`:
        a page passes every route) are forgotten.
        """
        wanted = set(routes if known is None else known)
        for stale in [route for route in self._entries if route not in wanted]:
            del self._entries[stale]
        return list(await asyncio.gather(*(self.describe(route) for route in routes)))

    async def _fetch(self, route: Route) -> model_registry_pb2.RegisteredModel:
        method = GET_MODEL_INFO if route.kind is RouteKind.IMAGE else GET_SERIES_MODEL_INFO
        try:
            response = await self._upstream.unary(
                route, method, convert.model_info_request(route), timeout=self._timeout_s
            )
            return convert.registered_model(route, convert.parse_model_info(route, response))
        except grpc.aio.AioRpcError as error:
            reason = f"{error.code().name}: {error.details() or 'no details'}"
        except DecodeError:
            reason = "the service answered with a message that is not a model description"
        logger.warning("model info of %s unavailable: %s", route.disease, reason)
        return convert.registered_model(route, None, reason[:_MAX_REASON_CHARS])
