"""The MRI series pipeline, free of gRPC: spool, read, both models in batches, fuse, report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client import Gauge

from mri_service import domain, fusion, report
from mri_service.errors import ModelMismatch
from mri_service.ingest import (
    IngestLimits,
    LoadedStudy,
    SelectionRules,
    Study,
    inspect_study,
    load_study,
    spooled_upload,
)
from mri_service.model_card import ModelCard
from servicekit.backend import Backend, ModelInfo
from servicekit.errors import ModelNotReady, QueueFull

logger = logging.getLogger("mri_service.servicer")

# What an autoscaler reads to add pods before series queue (k8s/components/hpa-queue-depth).
SERIES_IN_PROGRESS = Gauge(
    "medimg_series_in_progress",
    "AnalyzeSeries calls being received, prepared, analysed or waiting for a slot.",
)


@dataclass(frozen=True)
class Upload:
    """One streamed study: its zip bytes as they arrive, and what the caller asked for."""

    chunks: AsyncIterator[bytes]
    declared_size: int | None = None
    preview_size: int | None = None
    dicom_reports: bool = False


@dataclass(frozen=True)
class SeriesResult:
    """The analysis of one study, its previews and DICOM reports, and the stage timings."""

    results: list[fusion.SliceResult]
    study: Study
    previews: list[bytes]
    dicom: report.DicomReports | None
    upload_ms: float
    prepare_ms: float
    model_ms: float


@dataclass(frozen=True)
class Inspection:
    """What a study's analysis would read, and its previews."""

    study: Study
    previews: list[bytes]


class SeriesAnalyzer:
    """Analyses breast-MRI series; also their lifecycle (load, warm up, stop).

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

    @property
    def card(self) -> ModelCard:
        """Returns the card of the model set the analyzer runs."""
        return self._card

    def model_infos(self) -> list[ModelInfo]:
        """Returns both slice models' descriptions, in domain.MODEL_NAMES order."""
        self._check_ready()
        return [self._backends[name].info() for name in domain.MODEL_NAMES]

    async def analyse(self, upload: Upload) -> SeriesResult:
        """Returns the slices that show a tumour, for a streamed study zip.

        With `dicom_reports` the result also carries a TID 1500 Measurement Report and a
        Key Object Selection document (`report`), built from the study's patient and study
        modules, which live only for this call.
        """
        async with self._call_slot():
            started = time.perf_counter()
            loaded, upload_ms, prepare_ms = await self._receive(upload, analyse=True)
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
        return SeriesResult(
            results=results,
            study=loaded.study,
            previews=[domain.plane_png(p) for p in loaded.previews],
            dicom=dicom,
            upload_ms=upload_ms,
            prepare_ms=prepare_ms,
            model_ms=model_ms,
        )

    async def inspect(self, upload: Upload) -> Inspection:
        """Returns the series a study's analysis would read, and previews, without the models."""
        async with self._call_slot():
            loaded, _, _ = await self._receive(upload, analyse=False)
        return Inspection(loaded.study, [domain.plane_png(p) for p in loaded.previews])

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

    async def _receive(self, upload: Upload, *, analyse: bool) -> tuple[LoadedStudy, float, float]:
        """Spools the upload and reads the study (every phase's planes when `analyse`).

        Returns it with the upload's and the preparation's milliseconds.
        """
        started = time.perf_counter()
        async with spooled_upload(
            upload.chunks,
            spool_dir=self._spool_dir,
            limits=self._limits,
            declared_size=upload.declared_size,
        ) as zip_path:
            uploaded = time.perf_counter()
            async with self._slots:
                prepare_started = time.perf_counter()
                loaded = await asyncio.get_running_loop().run_in_executor(
                    self._preparer,
                    self._prepare,
                    zip_path,
                    upload.preview_size,
                    analyse and upload.dicom_reports,
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
