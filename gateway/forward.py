"""Forwarding one call's bytes to a disease's service, and passing its status back as-is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from gateway import convert
from gateway.registry import RouteKind
from gateway.router import Router
from servicekit.errors import BackendUnavailable, InvalidArgument

STATUS_DETAILS_KEY = "grpc-status-details-bin"
# grpc ends a request stream alike when the caller half-closes and when it cancels; a
# cancellation reaches the handler's task within a loop turn or two, so the upload waits
# this long before telling the upstream it is complete.
_CANCEL_SETTLE_S = 0.001

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handlers: TypeAlias = "dict[str, grpc.RpcMethodHandler[bytes, bytes]]"


def disease_unreachable(disease: str) -> str:
    """Returns the message of an UNAVAILABLE for a disease whose service cannot be reached."""
    return f"the service for disease {disease!r} cannot be reached; try again shortly"


async def pass_through(
    error: grpc.aio.AioRpcError, context: Context, unreachable_message: str
) -> NoReturn:
    """Ends the call with the upstream's status: code, details and trailing metadata as-is.

    A failure to reach the service at all (UNAVAILABLE that no server produced, so
    without status details) becomes BackendUnavailable with unreachable_message,
    which names the disease or the trainer instead of internal addresses.
    """
    trailing = tuple(error.trailing_metadata() or ())
    code = error.code()
    if code is grpc.StatusCode.UNAVAILABLE and all(k != STATUS_DETAILS_KEY for k, _ in trailing):
        raise BackendUnavailable(unreachable_message)
    await context.abort(code, error.details() or "", trailing)


async def forward_unary(
    router: Router, kind: RouteKind, method: str, disease: str, request: bytes, context: Context
) -> bytes:
    """Sends a unary call's bytes to the disease's service and returns its answer's bytes."""
    route = router.route(disease, kind)
    timeout = router.deadline(context.time_remaining())
    try:
        return await router.upstream.unary(route, method, request, timeout=timeout)
    except grpc.aio.AioRpcError as error:
        await pass_through(error, context, disease_unreachable(disease))


async def forward_series_upload(
    router: Router, service: str, name: str, requests: AsyncIterable[bytes], context: Context
) -> bytes:
    """Returns the upstream's response bytes to an upload; each chunk is sent on as it comes.

    AnalyzeSeries and InspectSeries take the same stream (the metadata, then the zip's
    chunks) and differ only in what the service answers, so both take this one path.
    """
    messages = aiter(requests)
    try:
        first = await anext(messages)
    except StopAsyncIteration:
        raise InvalidArgument(f"{name} needs the upload metadata as its first message") from None
    disease = convert.series_upload_disease(first, name)
    route = router.route(disease, RouteKind.SERIES)
    timeout = router.deadline(context.time_remaining(), upload=True)
    try:
        return await router.upstream.stream(
            route, f"/{service}/{name}", first, until_complete(messages, context), timeout=timeout
        )
    except grpc.aio.AioRpcError as error:
        await pass_through(error, context, disease_unreachable(disease))


async def until_complete(messages: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
    """Yields the caller's messages; ends as cancelled, not complete, when the caller cancelled."""
    async for message in messages:
        yield message
    await asyncio.sleep(_CANCEL_SETTLE_S)
    if context.cancelled():
        raise asyncio.CancelledError
