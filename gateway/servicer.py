"""The gateway's gRPC services: byte-level proxies for the model contracts, and the registry."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio
from medimg.v1 import model_registry_pb2, model_registry_pb2_grpc, trainer_service_pb2

from gateway import convert
from gateway.registry import Route, RouteKind
from gateway.router import Router, check_admin
from gateway.upstream import upstream_timeout
from servicekit import pagination
from servicekit.errors import BackendUnavailable, InvalidArgument
from servicekit.server import ServiceBinding

DIAGNOSIS_SERVICE = "medimg.v1.DiagnosisService"
SERIES_SERVICE = "medimg.v1.SeriesAnalysisService"
REGISTRY_SERVICE = "medimg.v1.ModelRegistry"
# Taken from the generated descriptor, which also makes reflection able to describe it.
TRAINER_SERVICE: str = trainer_service_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name

DIAGNOSE = f"/{DIAGNOSIS_SERVICE}/Diagnose"
GET_MODEL_INFO = f"/{DIAGNOSIS_SERVICE}/GetModelInfo"
# SeriesAnalysisService's client-streaming methods: the same upload stream, proxied alike.
SERIES_UPLOADS = ("AnalyzeSeries", "InspectSeries")
GET_SERIES_MODEL_INFO = f"/{SERIES_SERVICE}/GetSeriesModelInfo"

STATUS_DETAILS_KEY = "grpc-status-details-bin"
# grpc ends a request stream alike when the caller half-closes and when it cancels; a
# cancellation reaches the handler's task within a loop turn or two, so the upload waits
# this long before telling the upstream it is complete.
_CANCEL_SETTLE_S = 0.001

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handlers: TypeAlias = "dict[str, grpc.RpcMethodHandler[bytes, bytes]]"


TRAINER_UNREACHABLE = "the trainer service cannot be reached; try again shortly"


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
    settings = router.settings
    timeout = upstream_timeout(
        context.time_remaining(),
        default_s=settings.default_deadline_s,
        max_s=settings.max_deadline_s,
    )
    try:
        return await router.upstream.unary(route, method, request, timeout=timeout)
    except grpc.aio.AioRpcError as error:
        await pass_through(error, context, disease_unreachable(disease))


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
    """medimg.v1.SeriesAnalysisService: streams uploads (AnalyzeSeries, InspectSeries) through."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._upstream = router.upstream
        self._series_s = router.settings.series_deadline_s
        self._max_s = router.settings.max_deadline_s

    async def upload(self, name: str, requests: AsyncIterable[bytes], context: Context) -> bytes:
        """Returns the upstream's response bytes to an upload; each chunk is sent on as it comes.

        AnalyzeSeries and InspectSeries take the same stream (the metadata, then the zip's
        chunks) and differ only in what the service answers, so both take this one path.
        """
        messages = aiter(requests)
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            raise InvalidArgument(
                f"{name} needs the upload metadata as its first message"
            ) from None
        disease = convert.series_upload_disease(first, name)
        route = self._router.route(disease, RouteKind.SERIES)
        timeout = upstream_timeout(
            context.time_remaining(), default_s=self._series_s, max_s=self._max_s
        )
        try:
            return await self._upstream.stream(
                route,
                f"/{SERIES_SERVICE}/{name}",
                first,
                _until_complete(messages, context),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as error:
            await pass_through(error, context, disease_unreachable(disease))

    async def GetSeriesModelInfo(self, request: bytes, context: Context) -> bytes:
        """Returns the upstream's GetSeriesModelInfoResponse bytes."""
        disease = convert.series_model_info_disease(request)
        return await forward_unary(
            self._router, RouteKind.SERIES, GET_SERIES_MODEL_INFO, disease, request, context
        )

    def method_handlers(self) -> Handlers:
        """Returns the handlers, with no (de)serializers: requests and responses stay bytes."""
        handlers: Handlers = {
            name: grpc.stream_unary_rpc_method_handler(functools.partial(self.upload, name))
            for name in SERIES_UPLOADS
        }
        handlers["GetSeriesModelInfo"] = grpc.unary_unary_rpc_method_handler(
            self.GetSeriesModelInfo
        )
        return handlers


async def _until_complete(messages: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
    async for message in messages:
        yield message
    await asyncio.sleep(_CANCEL_SETTLE_S)
    if context.cancelled():
        raise asyncio.CancelledError


# TrainerService's unary methods, and whether each is safe to retry on UNAVAILABLE: only
# the reads are, since a server's UNAVAILABLE may come after a change was made.
TRAINER_UNARY: dict[str, bool] = {
    "CreateProject": False,
    "GetProject": True,
    "ListProjects": True,
    "DeleteProject": False,
    "GetTrainingJob": True,
    "CancelTrainingJob": False,
    "Publish": False,
    "ListPublishedModels": True,
}
TRAINER_SERVER_STREAMING = ("Train", "WatchTrainingJob")


def trainer_method(name: str) -> str:
    """Returns the full gRPC method path of a TrainerService method."""
    return f"/{TRAINER_SERVICE}/{name}"


def follow_timeout(context: Context) -> float | None:
    """Returns the upstream timeout of a call that lasts as long as its caller wants.

    Train, WatchTrainingJob and StreamPredictions follow a training or a live session,
    so they get the caller's own deadline (none when it set none) rather than a cap;
    they end when the caller cancels, which the proxy passes on.
    """
    remaining = context.time_remaining()
    return None if remaining is None else max(0.0, remaining)


class TrainerProxy:
    """medimg.v1.TrainerService: every call goes to the trainer route; bytes pass untouched.

    Streams are relayed message by message, never buffered, and the upstream call is
    cancelled as soon as the caller's call ends, however it ends.
    """

    def __init__(self, router: Router) -> None:
        self._router = router
        self._upstream = router.upstream
        self._settings = router.settings

    async def unary(self, name: str, request: bytes, context: Context) -> bytes:
        """Returns the trainer's response bytes; reads are retried on UNAVAILABLE."""
        route = self._router.trainer_route()
        timeout = upstream_timeout(
            context.time_remaining(),
            default_s=self._settings.default_deadline_s,
            max_s=self._settings.max_deadline_s,
        )
        try:
            return await self._upstream.unary(
                route, trainer_method(name), request, timeout=timeout, retry=TRAINER_UNARY[name]
            )
        except grpc.aio.AioRpcError as error:
            await pass_through(error, context, TRAINER_UNREACHABLE)

    async def Publish(self, request: bytes, context: Context) -> bytes:
        """Refuses a disease another route serves, forwards, then learns the trainer's models.

        The refresh after the trainer's answer makes this replica route the model at
        once; the other replicas learn it at their next poll. A refresh that fails is
        logged by the poller and does not undo the publication, which the next poll
        picks up.
        """
        self._router.check_publishable(convert.publish_disease(request))
        response = await self.unary("Publish", request, context)
        await self._router.publications.refresh()
        return response

    async def server_streaming(
        self, name: str, request: bytes, context: Context
    ) -> AsyncIterator[bytes]:
        """Yields each of the trainer's responses as it arrives."""
        route = self._router.trainer_route()
        call = self._upstream.server_stream(
            route, trainer_method(name), request, timeout=follow_timeout(context)
        )
        async for response in _relay(call, context):
            yield response

    async def UploadExamples(self, requests: AsyncIterable[bytes], context: Context) -> bytes:
        """Returns the trainer's UploadExamplesResponse bytes; examples go on one by one.

        A caller that cancels cancels the upstream call rather than completing it, so
        the trainer (which stores all of an upload or nothing) stores nothing.
        """
        route = self._router.trainer_route()
        messages = aiter(requests)
        first = await anext(messages, None)
        timeout = upstream_timeout(
            context.time_remaining(),
            default_s=self._settings.series_deadline_s,
            max_s=self._settings.max_deadline_s,
        )
        try:
            return await self._upstream.stream(
                route,
                trainer_method("UploadExamples"),
                first,
                _until_complete(messages, context),
                timeout=timeout,
                retry=False,
            )
        except grpc.aio.AioRpcError as error:
            await pass_through(error, context, TRAINER_UNREACHABLE)

    async def StreamPredictions(
        self, requests: AsyncIterable[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        """Relays frames to the trainer and predictions back, each as soon as it arrives."""
        route = self._router.trainer_route()
        call = self._upstream.bidi(
            route,
            trainer_method("StreamPredictions"),
            _until_complete(aiter(requests), context),
            timeout=follow_timeout(context),
        )
        async for response in _relay(call, context):
            yield response

    def method_handlers(self) -> Handlers:
        """Returns the handlers, with no (de)serializers: requests and responses stay bytes."""
        handlers: Handlers = {
            name: grpc.unary_unary_rpc_method_handler(functools.partial(self.unary, name))
            for name in TRAINER_UNARY
        }
        handlers["Publish"] = grpc.unary_unary_rpc_method_handler(self.Publish)
        for name in TRAINER_SERVER_STREAMING:
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                functools.partial(self.server_streaming, name)
            )
        handlers["UploadExamples"] = grpc.stream_unary_rpc_method_handler(self.UploadExamples)
        handlers["StreamPredictions"] = grpc.stream_stream_rpc_method_handler(
            self.StreamPredictions
        )
        return handlers


async def _relay(
    call: grpc.aio.UnaryStreamCall[bytes, bytes] | grpc.aio.StreamStreamCall[bytes, bytes],
    context: Context,
) -> AsyncIterator[bytes]:
    # The done callback covers a caller that goes away while grpc is sending a response,
    # when this generator is parked at its yield and would only be closed later.
    def cancel_upstream(_: object) -> None:
        call.cancel()

    # The stubs type the callback as a class, not a Protocol, so no function matches it.
    context.add_done_callback(cancel_upstream)  # type: ignore[arg-type]
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as error:
        await pass_through(error, context, TRAINER_UNREACHABLE)
    finally:
        call.cancel()


class RegistryServicer(model_registry_pb2_grpc.ModelRegistryServicer):
    """medimg.v1.ModelRegistry: lists the routes; adds and removes runtime ones."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def ListModels(
        self, request: model_registry_pb2.ListModelsRequest, context: Context
    ) -> model_registry_pb2.ListModelsResponse:
        """Returns one page of the routes with their models' descriptions, sorted by disease."""
        routes = self._router.table.model_routes()
        chunk, token = pagination.page(routes, _disease, request.page_size, request.page_token)
        models = await self._router.catalog.list(chunk, known=routes)
        return model_registry_pb2.ListModelsResponse(models=models, next_page_token=token)

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
    """Returns the gateway's four services, ready for servicekit's Server or serve()."""
    registry = RegistryServicer(router)
    return [
        ServiceBinding(DIAGNOSIS_SERVICE, _adder(DIAGNOSIS_SERVICE, DiagnosisProxy(router))),
        ServiceBinding(SERIES_SERVICE, _adder(SERIES_SERVICE, SeriesProxy(router))),
        ServiceBinding(TRAINER_SERVICE, _adder(TRAINER_SERVICE, TrainerProxy(router))),
        ServiceBinding(
            REGISTRY_SERVICE,
            lambda server: model_registry_pb2_grpc.add_ModelRegistryServicer_to_server(
                registry, server
            ),
        ),
    ]


def _adder(
    service: str, proxy: DiagnosisProxy | SeriesProxy | TrainerProxy
) -> Callable[[grpc.aio.Server], None]:
    handlers = proxy.method_handlers()

    def add(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        # Registered methods skip grpc's per-call lookup of generic handlers.
        server.add_registered_method_handlers(service, handlers)

    return add


def _disease(route: Route) -> str:
    return route.disease
