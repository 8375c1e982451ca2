"""Calls to the gateway's ModelRegistry: which diseases it routes to, and their models."""

from __future__ import annotations

from medimg.v1 import model_registry_pb2, model_registry_pb2_grpc

from web.gateway_client.channel import Connection, request_id_for
from web.gateway_client.convert import KINDS, description
from web.gateway_client.results import RegisteredModel


class RegistryCalls(Connection):
    """ListModels."""

    _registry: model_registry_pb2_grpc.ModelRegistryStub

    def list_models(self, *, request_id: str | None = None) -> list[RegisteredModel]:
        """Returns every disease the gateway routes to, sorted by disease."""
        request, method = model_registry_pb2.ListModelsRequest(), self._registry.ListModels
        timeout, rid = self.config.info_timeout_s, request_id_for(request_id)
        response = self._call("ListModels", method, request, timeout, rid)
        return [
            RegisteredModel(
                disease=entry.disease,
                kind=KINDS.get(entry.kind, "unspecified"),
                model=description(entry.model) if entry.HasField("model") else None,
                available=entry.available,
                unavailable_reason=entry.unavailable_reason,
                replica_count=entry.replica_count,
            )
            for entry in response.models
        ]
