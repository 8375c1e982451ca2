"""The web tier's client of the gateway: every remote service's calls over one shared channel."""

from __future__ import annotations

import os
import threading

from medimg.v1 import (
    diagnosis_service_pb2_grpc,
    model_registry_pb2_grpc,
    series_analysis_service_pb2_grpc,
    trainer_service_pb2_grpc,
)

from web.gateway_client.channel import GatewayConfig
from web.gateway_client.diagnosis import DiagnosisCalls
from web.gateway_client.registry import RegistryCalls
from web.gateway_client.series import SeriesCalls
from web.gateway_client.trainer import TrainerCalls


class GatewayClient(DiagnosisCalls, SeriesCalls, RegistryCalls, TrainerCalls):
    """Calls the gateway over one channel; safe to share between threads.

    Each base class holds one remote service's calls (web/gateway_client/<service>.py);
    this class only gives them their stubs on the one channel they share.
    """

    def __init__(self, config: GatewayConfig) -> None:
        super().__init__(config)
        self._diagnosis = diagnosis_service_pb2_grpc.DiagnosisServiceStub(self._channel)
        self._series = series_analysis_service_pb2_grpc.SeriesAnalysisServiceStub(self._channel)
        self._registry = model_registry_pb2_grpc.ModelRegistryStub(self._channel)
        self._trainer = trainer_service_pb2_grpc.TrainerServiceStub(self._channel)


# One client (one channel) per process; a forked child or a changed setting makes a new one.
_lock = threading.Lock()
_shared: tuple[int, GatewayClient] | None = None


def config_from_settings() -> GatewayConfig:
    """Returns the gateway's address and the training stream's deadline from Django settings.

    The other deadlines are GatewayConfig's: the services' own limits are tighter.
    """
    from django.conf import settings

    return GatewayConfig(
        address=settings.GATEWAY_ADDR,
        train_timeout_s=float(settings.WEB_TEACH_TRAIN_TIMEOUT_SECONDS),
    )


def get_gateway() -> GatewayClient:
    """Returns this process's client of the gateway that the settings name."""
    global _shared
    config = config_from_settings()
    with _lock:
        if _shared is not None:
            pid, client = _shared
            if pid == os.getpid() and client.config == config:
                return client
            if pid == os.getpid():
                client.close()
        client = GatewayClient(config)
        _shared = (os.getpid(), client)
        return client
