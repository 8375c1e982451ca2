"""The MRI pipeline's limits on this machine, measured in this process on one series zip.

- model only: both slice models (mri_service's embedded backends, the shipped demo
  models) over the series' preprocessed inputs in batches of the service's batch size,
  nothing else. Slices per second, one slice being both models over it.
- decode included: the work mri_service does for a series after the upload, done the
  best way one process can: every file the models use read whole from the zip (the
  service's ZipSource, with its caps), parsed, decoded and preprocessed into its plane
  (the service's `read_slice`, as the service's load does), and both models over the
  planes in the same batches. The files go to a pool of one thread per core, each with
  its own ZipSource. Two ways of feeding the models are timed and the faster is the limit:
  `staged`, every plane decoded before any model work (the service's order), and
  `overlapped`, the models running on each batch of slices as soon as its planes are
  decoded while the pool decodes the next ones. zlib, numpy, Pillow and torch work
  outside the GIL; pydicom's parse does not, so threads buy less here than in the skin
  pipeline.

The survey (one header read of every file, the study's checks) is left out: the file
list in anatomical order is read once before the timing, so the limit is what reading
and running the used files alone costs. Each figure is the median of `repeats` after a
warm-up pass, like the service runs it is compared with, and each is the best over
torch's intra-op thread counts of one and one per core (`torch_threads`).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mri_service import domain
from mri_service.backends.embedded import EmbeddedBackend
from mri_service.ingest import IngestLimits, load_study, open_study
from mri_service.ingest.archive import ZipSource
from mri_service.ingest.dicom import read_slice
from mri_service.model_card import load_model_card
from mri_service.settings import DEFAULT_MODEL_DIR

LIMITS = IngestLimits()


@dataclass(frozen=True)
class Limits:
    """The series' limits in slices per second, each the best over torch's thread counts.

    `figures` holds every configuration measured: (way, torch threads) -> slices/s, the
    way being `model only`, `staged` or `overlapped`.
    """

    figures: dict[tuple[str, int], float]

    def best(self, *ways: str) -> tuple[float, str]:
        """Returns the best figure among the ways, and its configuration in words."""
        value, (way, count) = max((v, k) for k, v in self.figures.items() if k[0] in ways)
        return value, f"{way}, torch x {count}"

    @property
    def model_only(self) -> float:
        """Returns the model-only limit."""
        return self.best(MODEL_ONLY)[0]

    @property
    def decode_included(self) -> float:
        """Returns the decode-included limit: the better of staged and overlapped."""
        return self.best(STAGED, OVERLAPPED)[0]

    @property
    def best_way(self) -> str:
        """Returns which configuration gave the decode-included limit."""
        return self.best(STAGED, OVERLAPPED)[1]

    def to_json(self) -> dict[str, float]:
        """Returns every configuration's figure, keyed `way, torch x N`."""
        return {f"{way}, torch x {count}": v for (way, count), v in self.figures.items()}


MODEL_ONLY, STAGED, OVERLAPPED = "model only", "staged", "overlapped"


def threads() -> int:
    """Returns the decode threads of the decode-included limit: one per core."""
    return os.cpu_count() or 1


class Pipeline:
    """Both models and a decode pool over one series zip."""

    def __init__(
        self, zip_path: Path, batch_slices: int, model_dir: Path = DEFAULT_MODEL_DIR
    ) -> None:
        self.zip_path, self.batch_slices = zip_path, batch_slices
        self.input_size = load_model_card(model_dir).input_size
        self.backends = {name: EmbeddedBackend(model_dir, name) for name in domain.MODEL_NAMES}
        for backend in self.backends.values():
            backend.load()
        study = open_study(zip_path, LIMITS)
        # phase -> its files in anatomical order, as the service's load reads them
        self.entries = {phase.name: [h.entry for h in phase.slices] for phase in study.phases}
        self.slices = study.slice_count
        self._local = threading.local()
        self._sources: list[ZipSource] = []
        self._sources_lock = threading.Lock()

    def _source(self) -> ZipSource:
        source: ZipSource | None = getattr(self._local, "source", None)
        if source is None:
            source = ZipSource(self.zip_path, LIMITS)
            self._local.source = source
            with self._sources_lock:
                self._sources.append(source)
        return source

    def plane(self, entry: str) -> np.ndarray:
        """Returns one file's plane: read whole from the zip, parsed, decoded, preprocessed."""
        data = self._source().read(entry)
        return read_slice(entry, data, LIMITS, [self.input_size]).planes[0]

    def run_models(self, planes: dict[str, np.ndarray]) -> None:
        """Runs both models over per-phase stacks of planes, batch by batch."""
        for name, batch in domain.model_inputs(planes).items():
            for offset in range(0, len(batch), self.batch_slices):
                self.backends[name].predict(batch[offset : offset + self.batch_slices])

    def staged(self, pool: ThreadPoolExecutor) -> None:
        """Decodes every plane on the pool, then runs the models: the service's order."""
        futures = {p: [pool.submit(self.plane, e) for e in es] for p, es in self.entries.items()}
        self.run_models({p: np.stack([f.result() for f in fs]) for p, fs in futures.items()})

    def overlapped(self, pool: ThreadPoolExecutor) -> None:
        """Runs the models on each batch of slices as soon as its planes are decoded."""
        chunks: list[dict[str, list[Future[np.ndarray]]]] = []
        for offset in range(0, self.slices, self.batch_slices):
            chunks.append(
                {
                    phase: [
                        pool.submit(self.plane, e)
                        for e in entries[offset : offset + self.batch_slices]
                    ]
                    for phase, entries in self.entries.items()
                }
            )
        for chunk in chunks:
            self.run_models({p: np.stack([f.result() for f in fs]) for p, fs in chunk.items()})

    def model_only(self) -> Callable[[], None]:
        """Returns a run of both models over the series' preprocessed planes, read once now."""
        planes = load_study(self.zip_path, self.input_size, LIMITS).planes
        return lambda: self.run_models(planes)

    def close(self) -> None:
        """Closes every thread's zip."""
        for source in self._sources:
            source.close()


@contextmanager
def pipeline(
    zip_path: Path, batch_slices: int, model_dir: Path = DEFAULT_MODEL_DIR
) -> Iterator[Pipeline]:
    """Returns the pipeline over zip_path for the with block."""
    built = Pipeline(zip_path, batch_slices, model_dir)
    try:
        yield built
    finally:
        built.close()


def torch_threads() -> list[int]:
    """Returns the intra-op thread counts tried: one, and one per core.

    On a machine whose cores other work shares, torch's OpenMP threads can wait on each
    other for longer than a single thread takes; the best of both is what one process can do.
    """
    return sorted({1, threads()})


def measure(
    zip_path: Path,
    batch_slices: int,
    repeats: int,
    *,
    model_dir: Path = DEFAULT_MODEL_DIR,
    torch_counts: list[int] | None = None,
) -> Limits:
    """Returns the series' limits; each configuration the median of `repeats`, taken in turn.

    model_dir is the model set (the shipped demo one unless told); torch_counts the intra-op
    thread counts tried (`torch_threads()` unless told).
    """
    initial = torch.get_num_threads()
    counts = torch_threads() if torch_counts is None else torch_counts
    built_pipeline = pipeline(zip_path, batch_slices, model_dir)
    with built_pipeline as built, ThreadPoolExecutor(threads()) as pool:
        ways: dict[str, Callable[[], None]] = {
            MODEL_ONLY: built.model_only(),
            STAGED: lambda: built.staged(pool),
            OVERLAPPED: lambda: built.overlapped(pool),
        }
        configurations = [(way, count) for count in counts for way in ways]
        times: dict[tuple[str, int], list[float]] = {c: [] for c in configurations}
        try:
            for repeat in range(repeats + 1):
                for way, count in configurations:
                    torch.set_num_threads(count)
                    started = time.perf_counter()
                    ways[way]()
                    if repeat:  # the first round warms torch's kernels, the decoders, the cache
                        times[way, count].append(time.perf_counter() - started)
        finally:
            torch.set_num_threads(initial)
        slices = built.slices
    return Limits({c: slices / statistics.median(t) for c, t in times.items()})
