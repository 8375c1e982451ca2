"""Small upstream services and a gateway harness for the gateway's in-process tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_info_pb2,
    series_analysis_service_pb2,
    series_analysis_service_pb2_grpc,
)

from gateway.router import Router
from gateway.servicer import build_bindings
from gateway.settings import GatewaySettings
from servicekit import errors
from servicekit.server import Server, ServiceBinding
from servicekit.settings import ServerSettings


class FakeDiagnosis(diagnosis_service_pb2_grpc.DiagnosisServiceServicer):
    """Answers with its own name as model name, so tests can see which replica answered."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.request_ids: list[str] = []
        self.time_remaining: list[float | None] = []
        self.model_info_calls = 0

    async def Diagnose(
        self, request: diagnosis_service_pb2.DiagnoseRequest, context: Any
    ) -> diagnosis_service_pb2.DiagnoseResponse:
        metadata = dict(context.invocation_metadata() or ())
        self.request_ids.append(str(metadata.get("x-request-id", "")))
        self.time_remaining.append(context.time_remaining())
        if request.image == b"bad":
            raise errors.InvalidImage("the file is not a readable image", reason="IMAGE_UNREADABLE")
        if request.image == b"loading":
            raise errors.ModelNotReady("the model is still loading")
        return diagnosis_service_pb2.DiagnoseResponse(
            disease=request.disease, top_label="benign", top_score=0.9, model_name=self.name
        )

    async def GetModelInfo(
        self, request: diagnosis_service_pb2.GetModelInfoRequest, context: Any
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        self.model_info_calls += 1
        return diagnosis_service_pb2.GetModelInfoResponse(
            model=model_info_pb2.ModelInfo(
                disease=request.disease,
                model_name=self.name,
                model_version="1",
                kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
                labels=["benign", "malignant"],
            )
        )


@dataclass
class FakeSeries(series_analysis_service_pb2_grpc.SeriesAnalysisServiceServicer):
    """Counts the chunks it reads; refuses uploads announced as larger than max_size_bytes.

    With fail_after_first_chunk, it answers UNAVAILABLE once the first chunk arrived.
    `completed` counts the uploads it analysed to the end.
    """

    max_size_bytes: int = 1_000_000
    fail_after_first_chunk: bool = False
    calls: int = 0
    completed: int = 0
    chunks: list[bytes] = field(default_factory=list)
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def AnalyzeSeries(
        self,
        request_iterator: AsyncIterator[series_analysis_service_pb2.AnalyzeSeriesRequest],
        context: Any,
    ) -> series_analysis_service_pb2.AnalyzeSeriesResponse:
        self.calls += 1
        disease = ""
        try:
            async for message in request_iterator:
                if message.HasField("metadata"):
                    disease = message.metadata.disease
                    if message.metadata.total_size_bytes > self.max_size_bytes:
                        raise errors.InvalidSeries("the series is larger than this service accepts")
                else:
                    self.chunks.append(message.chunk_data)
                    self.first_chunk.set()
                    if self.fail_after_first_chunk:
                        raise errors.ModelNotReady("the model went away")
            await asyncio.sleep(0.01)  # the analysis, during which a cancellation can land
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        self.completed += 1
        return series_analysis_service_pb2.AnalyzeSeriesResponse(
            disease=disease, slice_count=len(self.chunks), model_name="fake-series"
        )

    async def GetSeriesModelInfo(
        self, request: series_analysis_service_pb2.GetSeriesModelInfoRequest, context: Any
    ) -> series_analysis_service_pb2.GetSeriesModelInfoResponse:
        return series_analysis_service_pb2.GetSeriesModelInfoResponse(
            model=model_info_pb2.ModelInfo(
                disease=request.disease,
                model_name="fake-series",
                kind=model_info_pb2.MODEL_KIND_SERIES_ANALYZER,
            )
        )


def closed_port() -> int:
    """Returns a loopback port that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def upstream(
    servicer: FakeDiagnosis | FakeSeries, env: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """Runs a servicekit server with servicer (env: UP_* settings); yields its address."""
    if isinstance(servicer, FakeDiagnosis):
        binding = ServiceBinding(
            "medimg.v1.DiagnosisService",
            lambda s: diagnosis_service_pb2_grpc.add_DiagnosisServiceServicer_to_server(
                servicer, s
            ),
        )
    else:
        binding = ServiceBinding(
            "medimg.v1.SeriesAnalysisService",
            lambda s: series_analysis_service_pb2_grpc.add_SeriesAnalysisServiceServicer_to_server(
                servicer, s
            ),
        )
    server = Server(ServerSettings.from_env("UP_", default_port=0, env=env or {}), [binding])
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def gateway_settings(state_dir: Path, **env: str) -> GatewaySettings:
    """Returns gateway settings on a free port; env keys omit the GATEWAY_ prefix."""
    values: Mapping[str, str] = {
        "GATEWAY_PORT": "0",
        "GATEWAY_STATE_DIR": str(state_dir),
        "GATEWAY_RETRY_INITIAL_BACKOFF_MS": "10",
        "GATEWAY_RETRY_MAX_BACKOFF_MS": "50",
        **{f"GATEWAY_{key}": value for key, value in env.items()},
    }
    return GatewaySettings.from_env(values)


@asynccontextmanager
async def gateway(settings: GatewaySettings) -> AsyncIterator[grpc.aio.Channel]:
    """Runs the gateway in-process; yields a channel to it."""
    router = Router(settings)
    server = Server(settings.server, build_bindings(router), lifecycle=router)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(0)
