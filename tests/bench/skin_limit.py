"""The skin pipeline's limits on this machine, measured in this process.

- model only: the service's own embedded backend (the shipped SavedModel's serving
  signature) on preprocessed batches of BATCH, nothing else: what the model alone does.
- decode included: the same work skin_service does for each call, minus gRPC, at its
  best in one process: the callers' JPEG bytes decoded and preprocessed by the service's
  own `SKIN.prepare` (servicekit.classifier.domain: `decode_image` at the reduced size,
  then skin's centre-square preprocessing) with the service's image limits, on a pool of
  one thread per core, feeding batches of BATCH to the same backend on this thread, with
  DEPTH batches decoding ahead so that decode overlaps the model. Pillow decodes and
  resizes outside the GIL and TensorFlow runs its kernels outside it, so this uses every
  core.

Both figures are images per second, timed over `seconds` after a warm-up.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from skin_service.backends.embedded import EmbeddedBackend
from skin_service.domain import SKIN
from skin_service.settings import DEFAULT_MODEL_DIR, Settings

BATCH = 32
DEPTH = 2  # batches decoding while the model runs one


def threads() -> int:
    """Returns the decode threads of the decode-included limit: one per core."""
    return os.cpu_count() or 1


def load_backend(model_dir: Path = DEFAULT_MODEL_DIR) -> EmbeddedBackend:
    """Returns the service's embedded backend with a model loaded (the shipped demo one)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    backend = EmbeddedBackend(model_dir)
    backend.load()
    return backend


def model_only(backend: EmbeddedBackend, seconds: float) -> float:
    """Returns images per second of the backend alone on preprocessed batches of BATCH."""
    size = backend.info().input_height_px
    rng = np.random.default_rng(0)
    batch = rng.random((BATCH, *SKIN.input_shape(size)), dtype=np.float32)
    for _ in range(3):
        backend.predict(batch)
    images, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        backend.predict(batch)
        images += BATCH
    return images / (time.perf_counter() - began)


def decode_included(backend: EmbeddedBackend, jpegs: list[bytes], seconds: float) -> float:
    """Returns images per second from JPEG bytes to scores: decode, preprocess, batched model."""
    size = backend.info().input_height_px
    limits = Settings.from_env({}).image_limits
    sent = 0

    def next_batch(pool: ThreadPoolExecutor) -> list[Future[np.ndarray]]:
        nonlocal sent
        batch = [
            pool.submit(SKIN.prepare, jpegs[(sent + i) % len(jpegs)], limits, size)
            for i in range(BATCH)
        ]
        sent += BATCH
        return batch

    with ThreadPoolExecutor(threads(), thread_name_prefix="limit-decode") as pool:
        pending = deque(next_batch(pool) for _ in range(DEPTH))
        for _ in range(2):  # warm-up: the first batches pay for lazy initialisation
            pending.append(next_batch(pool))
            backend.predict(np.stack([future.result() for future in pending.popleft()]))
        images, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            pending.append(next_batch(pool))
            backend.predict(np.stack([future.result() for future in pending.popleft()]))
            images += BATCH
        elapsed = time.perf_counter() - began
        for batch in pending:
            for future in batch:
                future.cancel()
    return images / elapsed
