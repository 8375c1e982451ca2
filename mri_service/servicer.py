"""medimg.v1.SeriesAnalysisService for breast MRI: proto -> ingest -> models -> fusion -> proto."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from medimg.v1 import series_analysis_service_pb2, series_analysis_service_pb2_grpc
from prometheus_client import Gauge

from mri_service import convert, domain, fusion, report
from mri_service.errors import ModelMismatch
from mri_service.ingest import (
    IngestLimits,
    LoadedStudy,
    SelectionRules,
    inspect_study,
    load_study,
    spooled_upload,
)
from mri_service.model_card import ModelCard
from servicekit.backend import Backend
from servicekit.errors import ModelNotReady, QueueFull
from servicekit.server import ServiceBinding

SERVICE_NAME = "medimg.v1.SeriesAnalysisService"
logger = logging.getLogger(__name__)

# What an autoscaler reads to add pods before series queue (k8s/components/hpa-queue-depth).
SERIES_IN_PROGRESS = Gauge(
    "medimg_series_in_progress",
    "AnalyzeSeries calls being received, prepared, analysed or waiting for a slot.",
)


class MriSeriesServicer(series_analysis_service_pb2_grpc.SeriesAnalysisServiceServicer):
    """Analyses breast-MRI series; also the server's lifecycle (load, warm up, stop).

    A series is spooled to disk as it arrives, validated and preprocessed in full
    before any model work (so a bad file late in the series costs no model time), then
    both models run over it in batches of `batch_slices` on one model thread. At most
    `max_concurrent` series are prepared or analysed at once; up to `max_queued` more
    wait, and a call beyond that is refused with RESOURCE_EXHAUSTED at once.
    """

    def __init__(
        self,
        backends: Mapping[str, Backend],
        card: ModelCard,
        *,
        spool_dir: Path,
        limits: IngestLimits,
        batch_slices: int,
        max_concurrent: int = 2,
        max_queued: int = 8,
        rules: SelectionRules | None = None,
    ) -> None:
        missing = set(domain.MODEL_NAMES) - set(backends)
        if missing:
            raise ValueError(f"no backend for {', '.join(sorted(missing))}")
        self._backends = dict(backends)
        self._card = card
        self._spool_dir = spool_dir
        self._limits = limits
        self._rules = rules or SelectionRules()
        self._batch_slices = batch_slices
        self._max_calls = max_concurrent + max_queued
        self._calls = 0
        self._slots = asyncio.Semaphore(max_concurrent)
        self._preparer = ThreadPoolExecutor(max_concurrent, thread_name_prefix="mri-prepare")
        # One model call at a time: torch already uses every core for one batch.
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="mri-model")
        self._ready = False

    async def start(self) -> None:
        """Loads both models, checks they fit the card and runs one warm-up batch each.

        Raises:
            ModelNotReady: a model cannot be loaded or reached, or does not fit the card.
        """
        for name, backend in self._backends.items():
            await asyncio.to_thread(backend.load)
            info = backend.info()
            expected = (domain.MODEL_CHANNELS[name], self._card.input_size)
            if (info.input_channels, info.input_height_px) != expected:
                raise ModelMismatch(
                    f"the {name} model takes {info.input_channels} channel(s) at "
                    f"{info.input_height_px} px, the card says {expected[0]} at {expected[1]} px"
                )
            size = self._card.input_size
            blank = np.zeros((1, domain.MODEL_CHANNELS[name], size, size), dtype=np.float32)
            await asyncio.get_running_loop().run_in_executor(
                self._model_thread, backend.predict, blank
            )
        self._ready = True

    async def stop(self) -> None:
        """Stops the worker threads."""
        self._ready = False
        self._preparer.shutdown(wait=False, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    def _check_ready(self) -> None:
        if not self._ready:
            raise ModelNotReady("the MRI models are still loading; retry shortly")

    async def AnalyzeSeries(
        self,
        request_iterator: AsyncIterator[series_analysis_service_pb2.AnalyzeSeriesRequest],
        context: Any,
    ) -> series_analysis_service_pb2.AnalyzeSeriesResponse:
        """Returns the slices that show a tumour, for a study zip streamed in as chunks.

        With `dicom_reports` in the metadata, the answer also carries the result as a TID
        1500 Measurement Report and a Key Object Selection document (`report`), built from
        the study's patient and study modules, which live only for this call.
        """
        async with self._call_slot():
            started = time.perf_counter()
            loaded, upload_ms, prepare_ms = await self._receive(request_iterator, analyse=True)
            prepared = time.perf_counter()
            probabilities = await self._predict(domain.model_inputs(loaded.planes))
            model_ms = (time.perf_counter() - prepared) * 1000
            results = fusion.analyse(probabilities, self._card.threshold)
            dicom = None
            if loaded.attributes is not None:
                dicom = await asyncio.get_running_loop().run_in_executor(
                    self._preparer,
                    report.build_reports,
                    results,
                    self._card,
                    loaded.study,
                    loaded.attributes,
                )
        logger.info(
            "analysed %d slices, %d positive (upload %.0f ms, prepare %.0f ms, model %.0f ms, "
            "total %.0f ms)",
            len(results),
            sum(r.positive for r in results),
            upload_ms,
            prepare_ms,
            model_ms,
            (time.perf_counter() - started) * 1000,
        )
        previews = [domain.plane_png(p) for p in loaded.previews]
        return convert.to_response(
            results,
            self._card,
            loaded.study,
            previews,
            dicom,
            upload_ms=upload_ms,
            prepare_ms=prepare_ms,
            model_ms=model_ms,
        )

    async def InspectSeries(
        self,
        request_iterator: AsyncIterator[series_analysis_service_pb2.AnalyzeSeriesRequest],
        context: Any,
    ) -> series_analysis_service_pb2.InspectSeriesResponse:
        """Returns the series a study's analysis would read, and previews, without the models."""
        async with self._call_slot():
            loaded, _, _ = await self._receive(request_iterator, analyse=False)
        return convert.to_inspect_response(
            loaded.study, [domain.plane_png(p) for p in loaded.previews]
        )

    @contextlib.asynccontextmanager
    async def _call_slot(self) -> AsyncIterator[None]:
        """Counts the call against the queue limit, refusing it at once when full."""
        self._check_ready()
        if self._calls >= self._max_calls:
            raise QueueFull("too many series are being analysed; retry shortly")
        self._calls += 1
        SERIES_IN_PROGRESS.inc()
        try:
            yield
        finally:
            self._calls -= 1
            SERIES_IN_PROGRESS.dec()

    async def _receive(
        self,
        requests: AsyncIterator[series_analysis_service_pb2.AnalyzeSeriesRequest],
        *,
        analyse: bool,
    ) -> tuple[LoadedStudy, float, float]:
        """Spools the upload and reads the study (every phase's planes when `analyse`).

        Returns it with the upload's and the preparation's milliseconds.
        """
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            first = series_analysis_service_pb2.AnalyzeSeriesRequest()
        metadata = convert.to_upload_metadata(first)
        started = time.perf_counter()
        async with spooled_upload(
            convert.to_chunks(requests),
            spool_dir=self._spool_dir,
            limits=self._limits,
            declared_size=metadata.total_size_bytes or None,
        ) as zip_path:
            uploaded = time.perf_counter()
            async with self._slots:
                prepare_started = time.perf_counter()
                loaded = await asyncio.get_running_loop().run_in_executor(
                    self._preparer,
                    self._prepare,
                    zip_path,
                    metadata.preview_size_px or None,
                    analyse and metadata.dicom_reports,
                    analyse,
                )
        upload_ms = (uploaded - started) * 1000
        return loaded, upload_ms, (time.perf_counter() - prepare_started) * 1000

    def _prepare(
        self, zip_path: Path, preview_size: int | None, with_attributes: bool, analyse: bool
    ) -> LoadedStudy:
        if not analyse:
            return inspect_study(zip_path, self._limits, self._rules, preview_size=preview_size)
        return load_study(
            zip_path,
            self._card.input_size,
            self._limits,
            self._rules,
            preview_size=preview_size,
            with_attributes=with_attributes,
        )

    async def _predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        scores: dict[str, np.ndarray] = {}
        for name, batch in inputs.items():
            backend = self._backends[name]
            parts = []
            # Awaiting batch by batch lets a cancelled call stop between batches.
            for start in range(0, len(batch), self._batch_slices):
                part = batch[start : start + self._batch_slices]
                parts.append(await loop.run_in_executor(self._model_thread, backend.predict, part))
            scores[name] = np.concatenate(parts).reshape(-1)
        return scores

    async def GetSeriesModelInfo(
        self, request: series_analysis_service_pb2.GetSeriesModelInfoRequest, context: Any
    ) -> series_analysis_service_pb2.GetSeriesModelInfoResponse:
        """Returns the description of the two slice models and how their results are fused."""
        convert.check_disease(request.disease)
        self._check_ready()
        infos = [self._backends[name].info() for name in domain.MODEL_NAMES]
        return convert.to_model_info_response(self._card, infos)


def binding(servicer: MriSeriesServicer) -> ServiceBinding:
    """Returns the binding that hosts the servicer on a server."""

    def add(server: grpc.aio.Server) -> None:
        series_analysis_service_pb2_grpc.add_SeriesAnalysisServiceServicer_to_server(
            servicer, server
        )

    return ServiceBinding(SERVICE_NAME, add)
