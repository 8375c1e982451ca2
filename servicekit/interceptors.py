"""Server interceptor: request id, one log line per call, metrics and the error table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from servicekit import errors, metrics
from servicekit.request_context import (
    REQUEST_ID_KEY,
    accept_request_id,
    reset_request_id,
    set_request_id,
)

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "medimg"

# Subscripted only for the type checker: grpc's runtime class is not generic.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def status_for(exc: errors.MedimgError) -> grpc.Status:
    """Returns the gRPC status for a domain exception, with its reason as ErrorInfo."""
    code = grpc.StatusCode[exc.code]
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN)
    detail = status_pb2.Status(code=code.value[0], message=exc.message)
    detail.details.add().Pack(info)
    status: grpc.Status = rpc_status.to_status(detail)
    return status


def _code_name(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    if code is None:
        return "UNKNOWN"
    if isinstance(code, grpc.StatusCode):
        return code.name
    return grpc.StatusCode(code).name if isinstance(code, tuple) else str(code)


class _Call:
    """Book-keeping of one call: its request id, timing and the status it ended with."""

    def __init__(self, component: str, method: str, request_id: str) -> None:
        self.component = component
        self.method = method
        self.request_id = request_id
        self.code = "OK"
        self.started = time.perf_counter()

    def finish(self) -> None:
        seconds = time.perf_counter() - self.started
        metrics.record_call(self.component, self.method, self.code, seconds)
        logger.info(
            "%s %s %.1fms",
            self.method,
            self.code,
            seconds * 1000,
            extra={"grpc_method": self.method, "grpc_code": self.code,
                   "duration_ms": round(seconds * 1000, 2)},
        )  # fmt: skip


async def _abort_for(
    call: _Call, exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]
) -> None:
    """Turns an exception into the call's status; re-raises what is not ours to map."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        call.code = "CANCELLED"
        raise exc
    if isinstance(exc, grpc.aio.AbortError):
        call.code = _code_name(context)
        raise exc
    if isinstance(exc, errors.MedimgError):
        status = status_for(exc)
        call.code = status.code.name
        await context.abort(
            status.code,
            status.details,
            (*status.trailing_metadata, (REQUEST_ID_KEY, call.request_id)),
        )
    call.code = "INTERNAL"
    logger.error("unhandled error in %s", call.method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler of a server with the request id, logging, metrics and error table."""

    def __init__(self, component: str) -> None:
        self._component = component

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Returns the handler for the call, wrapped."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler  # probes every few seconds would drown the call log
        incoming = dict(handler_call_details.invocation_metadata or ())
        candidate = incoming.get(REQUEST_ID_KEY)
        request_id = accept_request_id(candidate if isinstance(candidate, str) else None)
        return _wrap(handler, self._component, method, request_id)


def _begin(
    component: str, method: str, request_id: str, context: grpc.aio.ServicerContext[Any, Any]
) -> tuple[_Call, object]:
    context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
    return _Call(component, method, request_id), set_request_id(request_id)


def _wrap(handler: Handler, component: str, method: str, request_id: str) -> Handler:
    """Returns a handler of the same shape whose behaviour runs inside the call's context."""

    @contextlib.asynccontextmanager
    async def observed(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        # One call's request id, log line, metrics and error mapping, for either shape.
        call, token = _begin(component, method, request_id, context)
        try:
            yield
        except BaseException as exc:
            await _abort_for(call, exc, context)
        finally:
            call.finish()
            reset_request_id(token)

    # The stubs type behaviours as synchronous; on an aio server they are coroutines.
    behaviour: Any
    if handler.unary_unary is not None or handler.stream_unary is not None:
        inner: Any = handler.unary_unary or handler.stream_unary

        async def unary_response(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with observed(context):
                return await inner(request, context)

        behaviour = unary_response
        make = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary is not None
            else grpc.stream_unary_rpc_method_handler
        )
    else:
        inner_stream: Any = handler.unary_stream or handler.stream_stream

        async def stream_response(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with observed(context):
                async for response in inner_stream(request, context):
                    yield response

        behaviour = stream_response
        make = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream is not None
            else grpc.stream_stream_rpc_method_handler
        )
    return make(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
