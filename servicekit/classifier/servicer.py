"""medimg.v1.DiagnosisService for one image classifier: proto -> domain -> backend -> proto."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from medimg.v1 import diagnosis_service_pb2, diagnosis_service_pb2_grpc

from servicekit.backend import Backend, ModelInfo
from servicekit.batcher import DynamicBatcher
from servicekit.classifier import flow
from servicekit.classifier.domain import ImageDomain
from servicekit.images import ImageLimits
from servicekit.server import ServiceBinding
from servicekit.settings import BatcherSettings

SERVICE_NAME = "medimg.v1.DiagnosisService"
# Decoding is CPU work that Pillow does mostly outside the GIL; a few threads keep one
# large upload from holding up the others without starving the model of cores.
DECODE_THREADS = max(2, min(4, os.cpu_count() or 1))


class ClassifierServicer(diagnosis_service_pb2_grpc.DiagnosisServiceServicer):
    """Diagnoses one image per call; also the server's lifecycle (load, warm up, stop)."""

    def __init__(
        self,
        domain: ImageDomain,
        backend: Backend,
        *,
        batcher: BatcherSettings,
        image_limits: ImageLimits,
    ) -> None:
        self._domain, self._backend, self._limits = domain, backend, image_limits
        name = domain.disease
        self._decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix=f"{name}-decode")
        # One model call at a time on its own thread, so decoding never queues ahead of it.
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-model")
        self._batcher = DynamicBatcher(
            backend.predict, batcher, name=name, executor=self._model_thread
        )
        self._info: ModelInfo | None = None

    async def start(self) -> None:
        """Loads, checks and warms up the model; see flow.start_model."""
        self._info = await flow.start_model(self._domain, self._backend, self._batcher)

    async def stop(self) -> None:
        """Stops the batcher and the worker threads."""
        self._info = None
        await self._batcher.stop()
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    async def Diagnose(
        self, request: diagnosis_service_pb2.DiagnoseRequest, context: Any
    ) -> diagnosis_service_pb2.DiagnoseResponse:
        """Returns the probability of each label for one image, highest first."""
        self._domain.check_disease(request.disease)
        size = flow.ready_info(self._domain, self._info).input_height_px
        loop = asyncio.get_running_loop()
        prepare = self._domain.prepare
        item = await loop.run_in_executor(self._decoder, prepare, request.image, self._limits, size)
        scores = await self._batcher.submit(item, timeout=context.time_remaining())
        # The backend's info, not the one from start: a model server may move to a new version.
        return flow.diagnose_response(self._domain, scores, self._backend.info())

    async def GetModelInfo(
        self, request: diagnosis_service_pb2.GetModelInfoRequest, context: Any
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        """Returns the labels, input size, version and backend of the model."""
        self._domain.check_disease(request.disease)
        flow.ready_info(self._domain, self._info)
        return flow.model_info_response(self._domain, self._backend.info())


def binding(servicer: ClassifierServicer) -> ServiceBinding:
    """Returns the binding that hosts the servicer on a server."""

    def add(server: grpc.aio.Server) -> None:
        diagnosis_service_pb2_grpc.add_DiagnosisServiceServicer_to_server(servicer, server)

    return ServiceBinding(SERVICE_NAME, add)
