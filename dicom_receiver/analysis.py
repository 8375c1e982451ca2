"""Streams a spooled study as a zip to the gateway's AnalyzeSeries, as any caller does."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from medimg.v1 import series_analysis_service_pb2 as pb
from medimg.v1 import series_analysis_service_pb2_grpc as pb_grpc

from servicekit.request_context import REQUEST_ID_KEY
from servicekit.status import error_reason

DISEASE = "mri"
# The chunk size of `medimg analyze-series`: per-message cost is noise at this size.
CHUNK_BYTES = 256 * 1024
# Worth another try later: the gateway or the service is down, busy or slow right now.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)


@dataclass
class AnalysisFailed(Exception):
    """AnalyzeSeries ended with a status other than OK.

    `message` is the service's own, which its contract keeps free of patient data.
    """

    code: grpc.StatusCode
    reason: str
    message: str
    request_id: str

    @property
    def transient(self) -> bool:
        """Tells whether the same study may succeed if sent again later."""
        return self.code in TRANSIENT_CODES

    def __str__(self) -> str:
        """Returns code, reason and message, as a log line shows them."""
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


class _ChunkSink:
    """A write-only stream that zipfile writes into; the generator drains it in chunks.

    It has no tell() or seek(), so zipfile writes each entry's sizes after its data (a
    data descriptor) and never goes back: the zip can be sent while it is being made.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the generator takes the buffered bytes."""

    def close(self) -> None:
        """Nothing to close: the buffer is drained by the generator."""

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def zip_chunks(files: Iterable[Path], *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yields a zip of files (stored flat, by file name, uncompressed) in chunks as it is made.

    Stored, not deflated: DICOM pixel data barely compresses and the zip only crosses
    loopback or a cluster network. File names are the spool's one-way keys, so no entry
    name carries a UID or patient data into the service's messages.
    """
    sink = _ChunkSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in files:
            with path.open("rb") as source, archive.open(path.name, "w", force_zip64=True) as entry:
                while block := source.read(chunk_bytes):
                    entry.write(block)
                    if len(sink.buffer) >= chunk_bytes:
                        yield sink.take()
    if sink.buffer:
        yield sink.take()


def upload_messages(chunks: Iterable[bytes]) -> Iterator[pb.AnalyzeSeriesRequest]:
    """Yields the metadata (disease mri, DICOM reports asked for), then the zip's chunks.

    The total size is left 0 (unknown): the zip is made while it is sent.
    """
    yield pb.AnalyzeSeriesRequest(
        metadata=pb.SeriesUploadMetadata(disease=DISEASE, dicom_reports=True)
    )
    for chunk in chunks:
        yield pb.AnalyzeSeriesRequest(chunk_data=chunk)


def analyze_study(
    channel: grpc.Channel, files: list[Path], *, timeout_s: float, request_id: str
) -> pb.AnalyzeSeriesResponse:
    """Streams the study's files to AnalyzeSeries and returns the answer.

    Raises:
        AnalysisFailed: the call ended with a status other than OK.
    """
    stub = pb_grpc.SeriesAnalysisServiceStub(channel)
    try:
        response: pb.AnalyzeSeriesResponse = stub.AnalyzeSeries(
            upload_messages(zip_chunks(files)),
            timeout=timeout_s,
            metadata=((REQUEST_ID_KEY, request_id),),
        )
    except grpc.RpcError as exc:
        if isinstance(exc, grpc.Call):
            raise AnalysisFailed(
                exc.code(), error_reason(exc), exc.details() or "", request_id
            ) from None
        raise AnalysisFailed(grpc.StatusCode.UNKNOWN, "", str(exc), request_id) from None
    return response
