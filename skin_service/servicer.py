"""medimg.v1.DiagnosisService for skin lesions: proto -> domain -> backend -> proto."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from medimg.v1 import diagnosis_service_pb2, diagnosis_service_pb2_grpc

from servicekit.backend import Backend, ModelInfo
from servicekit.batcher import DynamicBatcher
from servicekit.errors import ModelNotReady
from servicekit.images import ImageLimits, decode_image
from servicekit.server import ServiceBinding
from servicekit.settings import BatcherSettings
from skin_service import convert, domain
from skin_service.errors import ModelMismatch

SERVICE_NAME = "medimg.v1.DiagnosisService"
WARM_UP_TIMEOUT_S = 120.0
# Decoding is CPU work that Pillow does mostly outside the GIL; a few threads keep one
# large upload from holding up the others without starving the model of cores.
DECODE_THREADS = max(2, min(4, os.cpu_count() or 1))


class SkinDiagnosisServicer(diagnosis_service_pb2_grpc.DiagnosisServiceServicer):
    """Diagnoses skin-lesion images; also the server's lifecycle (load, warm up, stop)."""

    def __init__(
        self, backend: Backend, *, batcher: BatcherSettings, image_limits: ImageLimits
    ) -> None:
        self._backend = backend
        self._limits = image_limits
        self._decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="skin-decode")
        # One model call at a time on its own thread, so decoding never queues ahead of it.
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="skin-model")
        self._batcher = DynamicBatcher(
            backend.predict, batcher, name="skin", executor=self._model_thread
        )
        self._info: ModelInfo | None = None

    async def start(self) -> None:
        """Loads the model, checks its labels, starts the batcher and runs a warm-up inference.

        Raises:
            ModelNotReady: the model cannot be loaded, or its labels are not the domain's.
        """
        await asyncio.to_thread(self._backend.load)
        info = self._backend.info()
        if info.labels != domain.LABELS:
            raise ModelMismatch(
                f"the model's labels {list(info.labels)} are not {list(domain.LABELS)}"
            )
        await self._batcher.start()
        blank = np.zeros((info.input_height_px, info.input_width_px, info.input_channels))
        await self._batcher.submit(blank.astype(np.float32), timeout=WARM_UP_TIMEOUT_S)
        self._info = info

    async def stop(self) -> None:
        """Stops the batcher and the worker threads."""
        self._info = None
        await self._batcher.stop()
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    def _ready_info(self) -> ModelInfo:
        if self._info is None:
            raise ModelNotReady("the skin model is still loading; retry shortly")
        return self._info

    def _prepare(self, image: bytes, input_size: int) -> np.ndarray:
        decoded = decode_image(image, self._limits, min_side=domain.decoded_side(input_size))
        return domain.preprocess(decoded, input_size)

    async def Diagnose(
        self, request: diagnosis_service_pb2.DiagnoseRequest, context: Any
    ) -> diagnosis_service_pb2.DiagnoseResponse:
        """Returns the class probabilities of one skin-lesion image, highest first."""
        image = convert.to_image_bytes(request)
        info = self._ready_info()
        loop = asyncio.get_running_loop()
        item = await loop.run_in_executor(self._decoder, self._prepare, image, info.input_height_px)
        probabilities = await self._batcher.submit(item, timeout=context.time_remaining())
        ranked = domain.rank(probabilities, info.labels)
        return convert.to_diagnose_response(ranked, self._backend.info())

    async def GetModelInfo(
        self, request: diagnosis_service_pb2.GetModelInfoRequest, context: Any
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        """Returns the labels, input size, version and backend of the skin model."""
        convert.check_disease(request.disease)
        self._ready_info()
        return convert.to_model_info_response(self._backend.info())


def binding(servicer: SkinDiagnosisServicer) -> ServiceBinding:
    """Returns the binding that hosts the servicer on a server."""

    def add(server: grpc.aio.Server) -> None:
        diagnosis_service_pb2_grpc.add_DiagnosisServiceServicer_to_server(servicer, server)

    return ServiceBinding(SERVICE_NAME, add)
