"""Publishing: copy a project's model to the published store, then register it at the gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from medimg.v1 import model_info_pb2, model_registry_pb2, model_registry_pb2_grpc

from servicekit.errors import AlreadyExists, FailedPrecondition, Unavailable, UnknownDisease
from servicekit.request_context import outgoing_metadata
from trainer_service.model import SavedModel, load_model, write_json_atomic
from trainer_service.store import Store

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class GatewayTarget:
    """Where and how the trainer registers its published models."""

    address: str
    advertise_address: str
    admin_token: str | None
    timeout_s: float


class Publisher:
    """Publishes models: files first, then the gateway; undone when the gateway refuses.

    Each gateway replica keeps its own routes, and RegisterModel reaches one of them.
    `register_everywhere` (run at start and every TRAINER_REREGISTER_SECONDS) registers
    every published model at every address TRAINER_GATEWAY_ADDR resolves to, so that all
    replicas route it, including ones started after the publication. Registering a
    route again replaces it with itself.
    """

    def __init__(self, store: Store, published: PublishedModels, gateway: GatewayTarget) -> None:
        self._store = store
        self._published = published
        self._gateway = gateway
        self._lock = asyncio.Lock()

    async def publish(self, project_id: str, job_id: str, disease: str) -> model_info_pb2.ModelInfo:
        """Publishes the model of a job as disease and returns the gateway's description.

        Raises:
            AlreadyExists: another project of this trainer published the disease.
            FailedPrecondition: the gateway refused (e.g. it routes the disease elsewhere).
            Unavailable: the gateway cannot be reached; nothing was published.
        """
        async with self._lock:
            current = self._published.find(disease)
            if current is not None and current.publication.project_id != project_id:
                raise AlreadyExists(f"another project already published {disease!r}")
            publication = Publication(disease, project_id, job_id, time.time())
            backup = await asyncio.to_thread(self._install, publication)
            try:
                self._published.activate(publication)
                return await self._register(disease)
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

    async def register_everywhere(self) -> dict[str, int]:
        """Registers every published model at every gateway replica; returns successes per disease.

        A replica that refuses or cannot be reached is logged and tried again next time.
        """
        diseases = self._published.diseases()
        registered = dict.fromkeys(diseases, 0)
        if not diseases:
            return registered
        addresses = await gateway_replicas(self._gateway.address)
        for address in addresses:
            for disease in diseases:
                try:
                    await self._register(disease, address=address)
                except (Unavailable, FailedPrecondition, AlreadyExists) as refused:
                    logger.warning("gateway %s: %s", address, refused)
                else:
                    registered[disease] += 1
        return registered

    async def _register(
        self, disease: str, *, address: str | None = None
    ) -> model_info_pb2.ModelInfo:
        gateway = self._gateway
        metadata = list(outgoing_metadata())
        if gateway.admin_token:
            metadata.append(("authorization", f"Bearer {gateway.admin_token}"))
        request = model_registry_pb2.RegisterModelRequest(
            disease=disease,
            kind=model_info_pb2.MODEL_KIND_IMAGE_CLASSIFIER,
            addresses=[gateway.advertise_address],
        )
        async with grpc.aio.insecure_channel(address or gateway.address) as channel:
            stub = model_registry_pb2_grpc.ModelRegistryStub(channel)
            try:
                response = await stub.RegisterModel(
                    request, metadata=metadata, timeout=gateway.timeout_s
                )
            except grpc.aio.AioRpcError as error:
                raise _refusal(error, disease) from None
        return response.model.model


async def gateway_replicas(address: str) -> list[str]:
    """Returns "ip:port" for every address the gateway's host name resolves to.

    Behind a Kubernetes headless Service the name resolves to each gateway pod. When the
    name does not resolve, the address itself is returned so that the call reports why.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM
        )
    except OSError:
        return [address]
    replicas: list[str] = []
    for family, _, _, _, sockaddr in infos:
        ip = str(sockaddr[0])
        replica = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
        if replica not in replicas:
            replicas.append(replica)
    return replicas or [address]


def _refusal(error: grpc.aio.AioRpcError, disease: str) -> Exception:
    code = error.code()
    detail = error.details() or code.name
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"the gateway cannot be reached to publish {disease!r}; try again")
    if code is grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyExists(f"the gateway refused {disease!r}: {detail}")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return FailedPrecondition(
            "the gateway refused the trainer's admin token (TRAINER_GATEWAY_ADMIN_TOKEN)"
        )
    return FailedPrecondition(f"the gateway refused {disease!r}: {detail}")


def _read(directory: Path) -> Publication:
    raw = json.loads((directory / PUBLICATION_FILE).read_text())
    return Publication(**raw)
