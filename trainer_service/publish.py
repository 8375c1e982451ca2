"""Publishing: copy a project's model to the published store and serve it from there."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from servicekit.errors import AlreadyExists, UnknownDisease
from trainer_service.model import SavedModel, load_model, write_json_atomic
from trainer_service.store import Store

PUBLICATION_FILE = "publication.json"


@dataclass(frozen=True)
class Publication:
    """Which project and training job a published disease comes from."""

    disease: str
    project_id: str
    job_id: str
    published: float


@dataclass(frozen=True)
class PublishedModel:
    """A published disease, loaded and ready to diagnose."""

    publication: Publication
    model: SavedModel


class PublishedModels:
    """The models the trainer serves through DiagnosisService, keyed by disease."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._models: dict[str, PublishedModel] = {}
        self._lock = threading.Lock()

    def load_all(self) -> None:
        """Loads every complete published model on disk."""
        for directory in sorted(self._store.published_dir.iterdir()):
            if directory.name.startswith(".") or not (directory / PUBLICATION_FILE).is_file():
                continue
            self.activate(_read(directory))

    def activate(self, publication: Publication) -> None:
        """Loads the files of a published disease and starts serving them."""
        model = load_model(self._store.published_model_dir(publication.disease))
        with self._lock:
            self._models[publication.disease] = PublishedModel(publication, model)

    def deactivate(self, disease: str) -> None:
        """Stops serving a disease."""
        with self._lock:
            self._models.pop(disease, None)

    def get(self, disease: str) -> PublishedModel:
        """Returns the published model of a disease; UnknownDisease when there is none."""
        with self._lock:
            published = self._models.get(disease)
        if published is None:
            raise UnknownDisease(f"the trainer has published no model as {disease!r}")
        return published

    def find(self, disease: str) -> PublishedModel | None:
        """Returns the published model of a disease, or None."""
        with self._lock:
            return self._models.get(disease)

    def diseases(self) -> list[str]:
        """Returns the published diseases, sorted."""
        with self._lock:
            return sorted(self._models)

    def all(self) -> list[PublishedModel]:
        """Returns every published model, sorted by disease."""
        with self._lock:
            return [self._models[disease] for disease in sorted(self._models)]


class Publisher:
    """Publishes models: the files first, then the model is served; undone when loading fails.

    The trainer calls nobody: the gateway learns the published models by asking for them
    (ListPublishedModels), so a publication is complete once it is served here.
    """

    def __init__(self, store: Store, published: PublishedModels) -> None:
        self._store = store
        self._published = published
        self._lock = asyncio.Lock()

    async def publish(self, project_id: str, job_id: str, disease: str) -> PublishedModel:
        """Publishes the model of a job as disease and returns it, loaded and served.

        Raises:
            AlreadyExists: another project of this trainer published the disease.
        """
        async with self._lock:
            current = self._published.find(disease)
            if current is not None and current.publication.project_id != project_id:
                raise AlreadyExists(f"another project already published {disease!r}")
            publication = Publication(disease, project_id, job_id, time.time())
            backup = await asyncio.to_thread(self._install, publication)
            try:
                await asyncio.to_thread(self._published.activate, publication)
                return self._published.get(disease)
            except BaseException:
                await asyncio.to_thread(self._restore, disease, backup)
                if current is not None:
                    self._published.activate(current.publication)
                else:
                    self._published.deactivate(disease)
                raise
            finally:
                if backup is not None:
                    shutil.rmtree(backup.parent, ignore_errors=True)

    def _install(self, publication: Publication) -> Path | None:
        source = self._store.model_dir(publication.project_id, publication.job_id)
        target = self._store.published_model_dir(publication.disease)
        staging = Path(tempfile.mkdtemp(dir=self._store.staging_dir, prefix="publish-"))
        shutil.rmtree(staging)
        shutil.copytree(source, staging)
        write_json_atomic(staging / PUBLICATION_FILE, asdict(publication))
        backup = None
        if target.exists():
            backup = Path(tempfile.mkdtemp(dir=self._store.staging_dir, prefix="unpublished-"))
            os.replace(target, backup / "model")
            backup = backup / "model"
        os.replace(staging, target)
        return backup

    def _restore(self, disease: str, backup: Path | None) -> None:
        target = self._store.published_model_dir(disease)
        shutil.rmtree(target, ignore_errors=True)
        if backup is not None:
            os.replace(backup, target)


def _read(directory: Path) -> Publication:
    raw = json.loads((directory / PUBLICATION_FILE).read_text())
    return Publication(**raw)
