"""Calls the gateway for `medimg diagnose` and `medimg models`, and formats what comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
from medimg.v1 import (
    diagnosis_service_pb2,
    diagnosis_service_pb2_grpc,
    model_info_pb2,
    model_registry_pb2,
    model_registry_pb2_grpc,
)

from servicekit.request_context import REQUEST_ID_KEY, new_request_id
from servicekit.status import error_reason

GATEWAY_VARIABLE = "MEDIMG_GATEWAY"
DEFAULT_GATEWAY = "127.0.0.1:50051"
DEMO_NOTICE = "demo model — not for clinical use"

# The caller sent something the gateway cannot serve; retrying the same call will not help.
_CALLER_ERRORS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})


def gateway_address(flag: str | None, env: Mapping[str, str]) -> str:
    """Returns the gateway's address: the flag, else MEDIMG_GATEWAY, else the default."""
    if flag:
        return flag
    return env.get(GATEWAY_VARIABLE, "").strip() or DEFAULT_GATEWAY


class CallFailed(Exception):
    """A call to the gateway ended with a status other than OK."""

    def __init__(self, code: grpc.StatusCode, details: str, reason: str, request_id: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.reason = reason
        self.request_id = request_id

    @property
    def exit_code(self) -> int:
        """Returns 2 when the request was at fault, 1 otherwise."""
        return exit_code_for(self.code)


def exit_code_for(code: grpc.StatusCode) -> int:
    """Returns the command's exit code for a failed call's status code."""
    return 2 if code in _CALLER_ERRORS else 1


def describe_failure(failure: CallFailed, *, subject: str, address: str, timeout_s: float) -> str:
    """Returns the lines that tell a person what failed, why, and what to try."""
    code = failure.code.name
    if failure.reason and failure.reason != code:
        code = f"{code} ({failure.reason})"
    lines = [f"{subject}: {code}: {failure.details or 'no details'}"]
    if failure.code == grpc.StatusCode.UNAVAILABLE:
        lines.append(f"is the gateway running at {address}? `medimg up` starts it")
    elif failure.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        lines.append(f"no answer within {timeout_s:g}s; pass --timeout to wait longer")
    lines.append(f"request id: {failure.request_id}")
    return "\n".join(lines)


def unreadable_files(paths: Sequence[Path]) -> list[str]:
    """Returns one message per path that is not a readable file."""
    problems = []
    for path in paths:
        if not path.exists():
            problems.append(f"{path}: no such file")
        elif not path.is_file():
            problems.append(f"{path}: not a file")
        else:
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                problems.append(f"{path}: cannot be read ({exc.strerror})")
    return problems


def diagnose_files(
    address: str, disease: str, paths: Sequence[Path], *, timeout_s: float
) -> Iterator[tuple[Path, diagnosis_service_pb2.DiagnoseResponse]]:
    """Diagnoses each file in turn; raises CallFailed at the first call that fails."""
    with grpc.insecure_channel(address) as channel:
        stub = diagnosis_service_pb2_grpc.DiagnosisServiceStub(channel)
        for path in paths:
            request = diagnosis_service_pb2.DiagnoseRequest(
                disease=disease, image=path.read_bytes()
            )
            request_id = new_request_id()
            try:
                response = stub.Diagnose(
                    request, timeout=timeout_s, metadata=((REQUEST_ID_KEY, request_id),)
                )
            except grpc.RpcError as exc:
                raise call_failed(exc, request_id) from None
            yield path, response


def list_models(address: str, *, timeout_s: float) -> list[model_registry_pb2.RegisteredModel]:
    """Returns every registered model, page by page, within one deadline of timeout_s.

    Raises CallFailed when a call fails.
    """
    request_id = new_request_id()
    deadline = time.monotonic() + timeout_s
    models: list[model_registry_pb2.RegisteredModel] = []
    token = ""
    with grpc.insecure_channel(address) as channel:
        stub = model_registry_pb2_grpc.ModelRegistryStub(channel)
        while True:
            try:
                response = stub.ListModels(
                    model_registry_pb2.ListModelsRequest(page_token=token),
                    timeout=max(deadline - time.monotonic(), 0.001),
                    metadata=((REQUEST_ID_KEY, request_id),),
                )
            except grpc.RpcError as exc:
                raise call_failed(exc, request_id) from None
            models.extend(response.models)
            token = response.next_page_token
            if not token:
                return models


def call_failed(exc: grpc.RpcError, request_id: str) -> CallFailed:
    """Returns the CallFailed that describes a failed call."""
    if not isinstance(exc, grpc.Call):
        return CallFailed(grpc.StatusCode.UNKNOWN, str(exc), "", request_id)
    return CallFailed(exc.code(), exc.details() or "", error_reason(exc), request_id)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: frozenset[int] = frozenset()
) -> str:
    """Returns rows under headers in aligned columns; columns in `right` align right."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def render(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = ["-" * width for width in widths]
    return "\n".join([render(headers), render(rule), *(render(row) for row in rows)])


def format_probability(score: float) -> str:
    """Returns a probability with three decimals, as "0.912"."""
    return f"{score:.3f}"


def format_diagnoses(
    results: Sequence[tuple[str, diagnosis_service_pb2.DiagnoseResponse]],
) -> str:
    """Returns one row per file: label, every class's probability, model; then any notice."""
    labels = sorted({score.label for _, response in results for score in response.scores})
    headers = ["file", "label", *labels, "model"]
    rows = []
    for name, response in results:
        scores = {score.label: score.score for score in response.scores}
        probabilities = [
            format_probability(scores[label]) if label in scores else "-" for label in labels
        ]
        model = f"{response.model_name} {response.model_version}".strip()
        rows.append([name, response.top_label, *probabilities, model or "-"])
    right = frozenset(range(2, 2 + len(labels)))
    lines = [format_table(headers, rows, right=right)]
    if any(response.demo_model for _, response in results):
        lines.append(DEMO_NOTICE)
    return "\n".join(lines)


_KIND_WORDS = {
    model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER: "image",
    model_info_pb2.MODEL_KIND_SERIES_ANALYZER: "series",
}


def format_models(models: Sequence[model_registry_pb2.RegisteredModel]) -> str:
    """Returns one row per routed disease, or a sentence when there is none."""
    if not models:
        return "the gateway routes no diseases yet"
    headers = ["disease", "kind", "model", "version", "labels", "replicas", "status"]
    rows = []
    for entry in models:
        info = entry.model if entry.HasField("model") else None
        name = info.model_name if info is not None and info.model_name else "-"
        if info is not None and info.demo_model:
            name = f"{name} (demo)"
        status = "available" if entry.available else "unavailable"
        if not entry.available and entry.unavailable_reason:
            status = f"unavailable: {entry.unavailable_reason}"
        rows.append(
            [
                entry.disease,
                _KIND_WORDS.get(entry.kind, "unspecified"),
                name,
                info.model_version if info is not None and info.model_version else "-",
                ", ".join(info.labels) if info is not None and info.labels else "-",
                str(entry.replica_count),
                status,
            ]
        )
    lines = [format_table(headers, rows, right=frozenset({5}))]
    if any(entry.HasField("model") and entry.model.demo_model for entry in models):
        lines.append(
            "(demo) models are demonstrations (generated data or untrained): not for clinical use"
        )
    return "\n".join(lines)
