"""The trainer's published models as image routes: read page by page, polled, never saved."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from gateway import convert
from gateway.registry import Route, RouteError, RouteKind, RouteTable, make_route
from gateway.upstream import Upstream

logger = logging.getLogger(__name__)

LIST_PUBLISHED_MODELS = "/medimg.v1.TrainerService/ListPublishedModels"
PAGE_SIZE = 500
# A listing longer than this is a trainer that keeps handing out tokens: the reading
# stops and counts as failed rather than looping for ever.
MAX_PAGES = 200


@dataclass(frozen=True)
class Publications:
    """What the trainer publishes, sorted into what the gateway routes and what it ignores."""

    routes: dict[str, Route] = field(default_factory=dict)
    # Published, but the gateway's configuration routes these diseases: never replaced.
    configured: tuple[str, ...] = ()
    # Names the gateway's rule refuses (a trainer of another version, say).
    invalid: tuple[str, ...] = ()


def published_routes(
    diseases: Iterable[str], trainer: Route, is_configured: Callable[[str], bool]
) -> Publications:
    """Returns the image routes, to the trainer's addresses, of the diseases it publishes.

    A disease the configuration routes is left out: a user-trained model must never
    take over, say, `skin` from the service the deployment chose.
    """
    routes: dict[str, Route] = {}
    configured: list[str] = []
    invalid: list[str] = []
    for disease in diseases:
        if is_configured(disease):
            configured.append(disease)
            continue
        try:
            routes[disease] = make_route(disease, RouteKind.IMAGE, trainer.addresses)
        except RouteError:
            invalid.append(disease)
    return Publications(routes, tuple(sorted(configured)), tuple(sorted(invalid)))


class _EndlessListing(Exception):
    """The trainer handed out more pages than MAX_PAGES."""


class TrainerPublications:
    """Keeps the table's learned routes equal to what the trainer publishes.

    `refresh` reads every page of ListPublishedModels and replaces the learned routes
    only when the whole listing was read, so a disease the trainer no longer lists is
    dropped, and a trainer that cannot be read leaves the last known routes in force
    (calls to them then fail UNAVAILABLE, like calls to any unreachable service). Such
    a failure is logged when it begins and when it ends, not every period. Refreshes
    run one at a time: the one that starts last applies last.
    """

    def __init__(
        self,
        table: RouteTable,
        upstream: Upstream,
        *,
        period_s: float,
        timeout_s: float,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._table = table
        self._upstream = upstream
        self._period_s = period_s
        self._timeout_s = timeout_s
        self._page_size = page_size
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._ignored: set[str] = set()

    async def start(self) -> None:
        """Reads the trainer's models once, then polls every period; nothing without a trainer.

        The first reading happens before the gateway turns SERVING, so a restarted
        gateway routes the published models from its first call when the trainer answers.
        """
        if self._table.trainer() is None:
            return
        await self.refresh()
        self._task = asyncio.create_task(self._poll(), name="trainer-publications")

    async def stop(self) -> None:
        """Stops polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> bool:
        """Reads the whole listing and applies it; returns False when it could not be read."""
        trainer = self._table.trainer()
        if trainer is None:
            return False
        async with self._lock:
            try:
                diseases = await self._read(trainer)
            except grpc.aio.AioRpcError as error:
                self._failed(f"{error.code().name}: {error.details() or 'no details'}")
                return False
            except DecodeError:
                self._failed("the trainer answered with a message that is not a listing")
                return False
            except _EndlessListing:
                self._failed(f"the listing did not end within {MAX_PAGES} pages")
                return False
            self._recovered()
            self._apply(published_routes(diseases, trainer, self._table.is_configured))
            return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._period_s)
            try:
                await self.refresh()
            except Exception:
                # An unexpected bug must not end the polling of every later period.
                logger.exception("reading the trainer's published models failed")

    async def _read(self, trainer: Route) -> list[str]:
        diseases: list[str] = []
        token = ""
        for _ in range(MAX_PAGES):
            request = convert.published_models_request(token, self._page_size)
            response = await self._upstream.unary(
                trainer, LIST_PUBLISHED_MODELS, request, timeout=self._timeout_s
            )
            page, token = convert.published_models_page(response)
            diseases += page
            if not token:
                return diseases
        raise _EndlessListing

    def _apply(self, publications: Publications) -> None:
        before = self._table.learned()
        self._table.learn(publications.routes)
        for disease in sorted(publications.routes.keys() - before.keys()):
            logger.info("the trainer publishes %s: routed to the trainer", disease)
        for disease in sorted(before.keys() - publications.routes.keys()):
            logger.info("the trainer no longer publishes %s: route dropped", disease)
        for disease in publications.configured:
            if disease not in self._ignored:
                logger.warning(
                    "the trainer publishes %s, which the gateway's configuration routes; "
                    "the configured route stays",
                    disease,
                )
        for disease in publications.invalid:
            if disease not in self._ignored:
                logger.warning("the trainer publishes %r, not a valid disease name", disease)
        self._ignored = {*publications.configured, *publications.invalid}

    def _failed(self, reason: str) -> None:
        if not self._failing:
            logger.warning(
                "cannot read the trainer's published models (%s); keeping the %d known "
                "and trying again every %g s",
                reason,
                len(self._table.learned()),
                self._period_s,
            )
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            logger.info("the trainer's published models can be read again")
        self._failing = False
