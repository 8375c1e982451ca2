"""Calls to the gateway's ModelRegistry: which diseases it routes to, and their models."""

from __future__ import annotations

import time

from medimg.v1 import model_registry_pb2, model_registry_pb2_grpc

from web.gateway_client.channel import Connection, request_id_for
from web.gateway_client.convert import KINDS, description
from web.gateway_client.results import RegisteredModel


class RegistryCalls(Connection):
    """ListModels."""

    _registry: model_registry_pb2_grpc.ModelRegistryStub

    def list_models(self, *, request_id: str | None = None) -> list[RegisteredModel]:
        """Returns every disease the gateway routes to, sorted by disease, page by page.

        One deadline covers every page: the listing takes at most `info_timeout_s`.
        """
        method, rid = self._registry.ListModels, request_id_for(request_id)
        deadline = time.monotonic() + self.config.info_timeout_s
        models: list[RegisteredModel] = []
        token = ""
        while True:
            request = model_registry_pb2.ListModelsRequest(page_token=token)
            timeout = max(deadline - time.monotonic(), 0.001)
            response = self._call("ListModels", method, request, timeout, rid)
            models.extend(registered_model(entry) for entry in response.models)
            token = response.next_page_token
            if not token:
                return models


def registered_model(entry: model_registry_pb2.RegisteredModel) -> RegisteredModel:
    """Returns one route of the gateway, with its model's description when it had one."""
    return RegisteredModel(
        disease=entry.disease,
        kind=KINDS.get(entry.kind, "unspecified"),
        model=description(entry.model) if entry.HasField("model") else None,
        available=entry.available,
        unavailable_reason=entry.unavailable_reason,
        replica_count=entry.replica_count,
    )
