"""Calls to the gateway's DiagnosisService: one image in, its diagnosis out."""

from __future__ import annotations

import time

from medimg.v1 import diagnosis_service_pb2, diagnosis_service_pb2_grpc

from web.gateway_client.channel import Connection, elapsed_ms, request_id_for
from web.gateway_client.convert import description, probability
from web.gateway_client.results import ClassScore, Diagnosis, ModelDescription


class DiagnosisCalls(Connection):
    """Diagnose and GetModelInfo, for image classifiers."""

    _diagnosis: diagnosis_service_pb2_grpc.DiagnosisServiceStub

    def diagnose(
        self,
        *,
        image: bytes,
        disease: str,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Diagnosis:
        """Returns the diagnosis of one encoded image; raises GatewayError."""
        rid = request_id_for(request_id)
        request = diagnosis_service_pb2.DiagnoseRequest(disease=disease, image=image)
        started = time.perf_counter()
        timeout = timeout_s or self.config.diagnose_timeout_s
        response = self._call("Diagnose", self._diagnosis.Diagnose, request, timeout, rid)
        return Diagnosis(
            disease=response.disease or disease,
            top_label=response.top_label,
            top_score=probability(response.top_score),
            scores=tuple(ClassScore(s.label, probability(s.score)) for s in response.scores),
            model_name=response.model_name,
            model_version=response.model_version,
            demo_model=response.demo_model,
            request_id=rid,
            elapsed_ms=elapsed_ms(started),
        )

    def model_info(self, *, disease: str, request_id: str | None = None) -> ModelDescription:
        """Returns the description of the model that classifies images of a disease."""
        request = diagnosis_service_pb2.GetModelInfoRequest(disease=disease)
        method = self._diagnosis.GetModelInfo
        timeout, rid = self.config.info_timeout_s, request_id_for(request_id)
        return description(self._call("GetModelInfo", method, request, timeout, rid).model)
