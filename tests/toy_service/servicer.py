"""DiagnosisService of the toy model, built the way a real image service is."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
from medimg.v1 import diagnosis_service_pb2, diagnosis_service_pb2_grpc

from servicekit import classification
from servicekit.batcher import DynamicBatcher
from servicekit.server import ServiceBinding
from servicekit.settings import BatcherSettings
from tests.toy_service.model import ToyBackend, decode

DISEASE = "toy"


class ToyDiagnosisServicer(diagnosis_service_pb2_grpc.DiagnosisServiceServicer):
    """Decodes, batches, predicts and ranks; also the server's lifecycle."""

    def __init__(self, backend: ToyBackend, batcher_settings: BatcherSettings) -> None:
        self._backend = backend
        self._batcher = DynamicBatcher(backend.predict, batcher_settings, name="toy")

    async def start(self) -> None:
        """Loads the model, starts the batcher and runs one warm-up inference."""
        await asyncio.to_thread(self._backend.load)
        await self._batcher.start()
        await self._batcher.submit(np.zeros((32, 32, 3), np.float32), timeout=30)

    async def stop(self) -> None:
        """Stops the batcher."""
        await self._batcher.stop()

    async def Diagnose(
        self, request: diagnosis_service_pb2.DiagnoseRequest, context: Any
    ) -> diagnosis_service_pb2.DiagnoseResponse:
        """Returns the colour probabilities of one image."""
        image = decode(request.image)
        scores = await self._batcher.submit(image, timeout=context.time_remaining())
        info = self._backend.info()
        ranked = classification.rank(scores, info.labels)
        return classification.to_diagnose_response(ranked, info, disease=DISEASE)

    async def GetModelInfo(
        self, request: diagnosis_service_pb2.GetModelInfoRequest, context: Any
    ) -> diagnosis_service_pb2.GetModelInfoResponse:
        """Returns the toy model's description."""
        model = classification.to_model_info(self._backend.info(), disease=DISEASE)
        return diagnosis_service_pb2.GetModelInfoResponse(model=model)


def binding(servicer: ToyDiagnosisServicer) -> ServiceBinding:
    """Returns the binding that hosts the servicer on a server."""

    def add(server: grpc.aio.Server) -> None:
        diagnosis_service_pb2_grpc.add_DiagnosisServiceServicer_to_server(servicer, server)

    return ServiceBinding("medimg.v1.DiagnosisService", add)
