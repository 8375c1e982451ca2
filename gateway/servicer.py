"""The gateway's gRPC services: byte-level proxies for the model contracts, and the registry."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, AsyncIterator, Callable

import grpc
import grpc.aio
from medimg.v1 import model_registry_pb2, model_registry_pb2_grpc

from gateway import convert, trainer_calls
from gateway.forward import Context, Handlers, forward_series_upload, forward_unary
from gateway.registry import Route, RouteKind
from gateway.router import Router, check_admin
from gateway.trainer_calls import TRAINER_SERVER_STREAMING, TRAINER_SERVICE, TRAINER_UNARY
from servicekit import pagination
from servicekit.errors import InvalidArgument
from servicekit.server import ServiceBinding

DIAGNOSIS_SERVICE = "medimg.v1.DiagnosisService"
SERIES_SERVICE = "medimg.v1.SeriesAnalysisService"
REGISTRY_SERVICE = "medimg.v1.ModelRegistry"

DIAGNOSE = f"/{DIAGNOSIS_SERVICE}/Diagnose"
GET_MODEL_INFO = f"/{DIAGNOSIS_SERVICE}/GetModelInfo"
# SeriesAnalysisService's client-streaming methods: the same upload stream, proxied alike.
SERIES_UPLOADS = ("AnalyzeSeries", "InspectSeries")
GET_SERIES_MODEL_INFO = f"/{SERIES_SERVICE}/GetSeriesModelInfo"


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

    async def upload(self, name: str, requests: AsyncIterable[bytes], context: Context) -> bytes:
        """Returns the upstream's response bytes to an upload; each chunk is sent on as it comes."""
        return await forward_series_upload(self._router, SERIES_SERVICE, name, requests, context)

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


class TrainerProxy:
    """medimg.v1.TrainerService: every call goes to the trainer route; bytes pass untouched.

    Streams are relayed message by message, never buffered, and the upstream call is
    cancelled as soon as the caller's call ends, however it ends.
    """

    def __init__(self, router: Router) -> None:
        self._router = router

    async def unary(self, name: str, request: bytes, context: Context) -> bytes:
        """Returns the trainer's response bytes; reads are retried on UNAVAILABLE."""
        return await trainer_calls.unary(self._router, name, request, context)

    async def Publish(self, request: bytes, context: Context) -> bytes:
        """Refuses a disease another route serves, forwards, then learns the trainer's models."""
        return await trainer_calls.publish(self._router, request, context)

    async def server_streaming(
        self, name: str, request: bytes, context: Context
    ) -> AsyncIterator[bytes]:
        """Yields each of the trainer's responses as it arrives."""
        async for response in trainer_calls.server_stream(self._router, name, request, context):
            yield response

    async def UploadExamples(self, requests: AsyncIterable[bytes], context: Context) -> bytes:
        """Returns the trainer's UploadExamplesResponse bytes; examples go on one by one."""
        return await trainer_calls.upload_examples(self._router, requests, context)

    async def StreamPredictions(
        self, requests: AsyncIterable[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        """Relays frames to the trainer and predictions back, each as soon as it arrives."""
        async for response in trainer_calls.stream_predictions(self._router, requests, context):
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
