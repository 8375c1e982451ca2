"""The gateway's gRPC services: byte-level proxies for the model contracts, and the registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio
from medimg.v1 import model_registry_pb2, model_registry_pb2_grpc

from gateway import convert
from gateway.registry import RouteKind
from gateway.router import Router, check_admin
from gateway.upstream import upstream_timeout
from servicekit.errors import BackendUnavailable, InvalidArgument
from servicekit.server import ServiceBinding

DIAGNOSIS_SERVICE = "medimg.v1.DiagnosisService"
SERIES_SERVICE = "medimg.v1.SeriesAnalysisService"
REGISTRY_SERVICE = "medimg.v1.ModelRegistry"

DIAGNOSE = f"/{DIAGNOSIS_SERVICE}/Diagnose"
GET_MODEL_INFO = f"/{DIAGNOSIS_SERVICE}/GetModelInfo"
ANALYZE_SERIES = f"/{SERIES_SERVICE}/AnalyzeSeries"
GET_SERIES_MODEL_INFO = f"/{SERIES_SERVICE}/GetSeriesModelInfo"

STATUS_DETAILS_KEY = "grpc-status-details-bin"
# grpc ends a request stream alike when the caller half-closes and when it cancels; a
# cancellation reaches the handler's task within a loop turn or two, so the upload waits
# this long before telling the upstream it is complete.
_CANCEL_SETTLE_S = 0.001

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handlers: TypeAlias = "dict[str, grpc.RpcMethodHandler[bytes, bytes]]"


async def pass_through(error: grpc.aio.AioRpcError, context: Context, disease: str) -> NoReturn:
    """Ends the call with the upstream's status: code, details and trailing metadata as-is.

    A failure to reach the service at all (UNAVAILABLE that no server produced, so
    without status details) becomes BackendUnavailable, whose message names the
    disease instead of internal addresses.
    """
    trailing = tuple(error.trailing_metadata() or ())
    code = error.code()
    if code is grpc.StatusCode.UNAVAILABLE and all(k != STATUS_DETAILS_KEY for k, _ in trailing):
        raise BackendUnavailable(
            f"the service for disease {disease!r} cannot be reached; try again shortly"
        )
    await context.abort(code, error.details() or "", trailing)


async def forward_unary(
    router: Router, kind: RouteKind, method: str, disease: str, request: bytes, context: Context
) -> bytes:
    """Sends a unary call's bytes to the disease's service and returns its answer's bytes."""
    route = router.route(disease, kind)
    settings = router.settings
    timeout = upstream_timeout(
        context.time_remaining(),
        default_s=settings.default_deadline_s,
        max_s=settings.max_deadline_s,
    )
    try:
        return await router.upstream.unary(route, method, request, timeout=timeout)
    except grpc.aio.AioRpcError as error:
        await pass_through(error, context, disease)


class DiagnosisProxy:
    """medimg.v1.DiagnosisService: routes by disease; the bytes are never re-encoded."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def Diagnose(self, request: bytes, context: Context) -> bytes:
        """Returns the upstream's DiagnoseResponse bytes, retried on another replica if down."""
        disease = convert.diagnose_disease(request)
        return await forward_unary(
            self._router, RouteKind.IMAGE, DIAGNOSE, disease, request, context
        )

    async def GetModelInfo(self, request: bytes, context: Context) -> bytes:
        """Returns the upstream's GetModelInfoResponse bytes."""
        disease = convert.model_info_disease(request)
        return await forward_unary(
            self._router, RouteKind.IMAGE, GET_MODEL_INFO, disease, request, context
        )

    def method_handlers(self) -> Handlers:
        """Returns the handlers, with no (de)serializers: requests and responses stay bytes."""
        return {
            "Diagnose": grpc.unary_unary_rpc_method_handler(self.Diagnose),
            "GetModelInfo": grpc.unary_unary_rpc_method_handler(self.GetModelInfo),
        }


class SeriesProxy:
    """medimg.v1.SeriesAnalysisService: streams uploads through chunk by chunk."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._upstream = router.upstream
        self._series_s = router.settings.series_deadline_s
        self._max_s = router.settings.max_deadline_s

    async def AnalyzeSeries(self, requests: AsyncIterable[bytes], context: Context) -> bytes:
        """Returns the upstream's AnalyzeSeriesResponse bytes; each chunk is sent on as it comes."""
        messages = aiter(requests)
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            raise InvalidArgument(
                "AnalyzeSeries needs the upload metadata as its first message"
            ) from None
        disease = convert.series_upload_disease(first)
        route = self._router.route(disease, RouteKind.SERIES)
        timeout = upstream_timeout(
            context.time_remaining(), default_s=self._series_s, max_s=self._max_s
        )
        try:
            return await self._upstream.stream(
                route, ANALYZE_SERIES, first, _until_complete(messages, context), timeout=timeout
            )
        except grpc.aio.AioRpcError as error:
            await pass_through(error, context, disease)

    async def GetSeriesModelInfo(self, request: bytes, context: Context) -> bytes:
        """Returns the upstream's GetSeriesModelInfoResponse bytes."""
        disease = convert.series_model_info_disease(request)
        return await forward_unary(
            self._router, RouteKind.SERIES, GET_SERIES_MODEL_INFO, disease, request, context
        )

    def method_handlers(self) -> Handlers:
        """Returns the handlers, with no (de)serializers: requests and responses stay bytes."""
        return {
            "AnalyzeSeries": grpc.stream_unary_rpc_method_handler(self.AnalyzeSeries),
            "GetSeriesModelInfo": grpc.unary_unary_rpc_method_handler(self.GetSeriesModelInfo),
        }


async def _until_complete(messages: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
    async for message in messages:
        yield message
    await asyncio.sleep(_CANCEL_SETTLE_S)
    if context.cancelled():
        raise asyncio.CancelledError


class RegistryServicer(model_registry_pb2_grpc.ModelRegistryServicer):
    """medimg.v1.ModelRegistry: lists the routes; adds and removes runtime ones."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def ListModels(
        self, request: model_registry_pb2.ListModelsRequest, context: Context
    ) -> model_registry_pb2.ListModelsResponse:
        """Returns every route with its model's description, sorted by disease."""
        models = await self._router.catalog.list(self._router.table.routes())
        return model_registry_pb2.ListModelsResponse(models=models)

    async def RegisterModel(
        self, request: model_registry_pb2.RegisterModelRequest, context: Context
    ) -> model_registry_pb2.RegisterModelResponse:
        """Adds or replaces a runtime route and returns it with its model's description."""
        self._authorize(context)
        route = convert.route_from_register(request)
        await self._router.register(route)
        model = await self._router.catalog.describe(route, refresh=True)
        return model_registry_pb2.RegisterModelResponse(model=model)

    async def UnregisterModel(
        self, request: model_registry_pb2.UnregisterModelRequest, context: Context
    ) -> model_registry_pb2.UnregisterModelResponse:
        """Removes a runtime route; configured routes are FAILED_PRECONDITION."""
        self._authorize(context)
        if not request.disease:
            raise InvalidArgument("disease is required")
        await self._router.unregister(request.disease)
        return model_registry_pb2.UnregisterModelResponse()

    def _authorize(self, context: Context) -> None:
        authorization = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                authorization = value
        check_admin(self._router.settings.admin_token, authorization)


def build_bindings(router: Router) -> list[ServiceBinding]:
    """Returns the gateway's three services, ready for servicekit's Server or serve()."""
    registry = RegistryServicer(router)
    return [
        ServiceBinding(DIAGNOSIS_SERVICE, _adder(DIAGNOSIS_SERVICE, DiagnosisProxy(router))),
        ServiceBinding(SERIES_SERVICE, _adder(SERIES_SERVICE, SeriesProxy(router))),
        ServiceBinding(
            REGISTRY_SERVICE,
            lambda server: model_registry_pb2_grpc.add_ModelRegistryServicer_to_server(
                registry, server
            ),
        ),
    ]


def _adder(service: str, proxy: DiagnosisProxy | SeriesProxy) -> Callable[[grpc.aio.Server], None]:
    handlers = proxy.method_handlers()

    def add(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        # Registered methods skip grpc's per-call lookup of generic handlers.
        server.add_registered_method_handlers(service, handlers)

    return add
