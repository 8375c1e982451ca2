"""Live prediction: the one-frame slot that drops stale frames, and a cache of loaded models."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Generic, TypeVar

from trainer_service.model import SavedModel, load_model

T = TypeVar("T")
MODEL_CACHE_SIZE = 8


class LatestFrameSlot(Generic[T]):
    """Holds at most one waiting frame: a newer one replaces it and counts as a drop.

    One producer and one consumer on the same event loop.
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._dropped = 0
        self._closed = False
        self._changed = asyncio.Event()

    def put(self, item: T) -> None:
        """Makes item the waiting frame, dropping the one that waited."""
        if self._item is not None:
            self._dropped += 1
        self._item = item
        self._changed.set()

    def close(self) -> None:
        """Says no more frames will come; a waiting one is still taken."""
        self._closed = True
        self._changed.set()

    async def take(self) -> tuple[T, int] | None:
        """Returns the waiting frame and the drops since the last take; None once closed, empty."""
        while self._item is None:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        item, dropped = self._item, self._dropped
        self._item, self._dropped = None, 0
        return item, dropped


class ModelCache:
    """Keeps the few most recently used models loaded; safe to use from any thread."""

    def __init__(self, size: int = MODEL_CACHE_SIZE) -> None:
        self._size = size
        self._models: OrderedDict[Path, SavedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, directory: Path) -> SavedModel:
        """Returns the model saved in directory, loading it on first use."""
        with self._lock:
            model = self._models.get(directory)
            if model is not None:
                self._models.move_to_end(directory)
                return model
        model = load_model(directory)
        with self._lock:
            self._models[directory] = model
            while len(self._models) > self._size:
                self._models.popitem(last=False)
        return model

    def forget(self, directory: Path) -> None:
        """Drops a model whose files are about to change or go."""
        with self._lock:
            self._models.pop(directory, None)
