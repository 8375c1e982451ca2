"""The trainer's domain in one place: projects, examples, jobs, predictions and publishing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from servicekit.classification import Ranked, rank
from servicekit.errors import FailedPrecondition, InvalidImage
from servicekit.images import decode_image
from trainer_service import names, train
from trainer_service.errors import TrainingCancelled
from trainer_service.jobs import JobManager, JobSnapshot
from trainer_service.model import ModelCard, SavedModel, save_model
from trainer_service.names import TrainParams
from trainer_service.predict import ModelCache
from trainer_service.publish import PublishedModel, PublishedModels, Publisher
from trainer_service.settings import Settings
from trainer_service.store import Example, Project, Store, data_hash

MIN_EXAMPLES_PER_LABEL = 2


@dataclass(frozen=True)
class ProjectView:
    """A project with its example counts, as GetProject shows it."""

    project: Project
    example_counts: tuple[int, ...]


class Trainer:
    """Everything the gRPC servicers call; also the server's lifecycle (start, stop)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.data_dir)
        self.jobs = JobManager(
            self.store, self._run_job, max_concurrent=settings.max_concurrent_trainings
        )
        self.published = PublishedModels(self.store)
        self.publisher = Publisher(self.store, self.published)
        self.models = ModelCache()
        # Inference gets its own thread so that a long decode never waits behind training.
        self._inference = ThreadPoolExecutor(1, thread_name_prefix="trainer-infer")
        self._decode = ThreadPoolExecutor(2, thread_name_prefix="trainer-decode")

    async def start(self) -> None:
        """Fixes torch's threads, fails interrupted jobs and loads the published models."""
        train.configure_torch(self.settings.train_threads)
        await asyncio.to_thread(self.jobs.recover)
        await asyncio.to_thread(self.published.load_all)

    async def stop(self) -> None:
        """Stops running trainings (they count as interrupted) and the worker threads."""
        await asyncio.to_thread(self.jobs.stop)
        self._inference.shutdown(wait=False, cancel_futures=True)
        self._decode.shutdown(wait=False, cancel_futures=True)

    # Projects and examples

    def create_project(self, display_name: str, labels: list[str]) -> ProjectView:
        """Creates a project with validated labels."""
        project = self.store.create_project(
            names.validate_display_name(display_name), names.validate_labels(labels)
        )
        return ProjectView(project, (0,) * len(project.labels))

    def get_project(self, project_id: str) -> ProjectView:
        """Returns a project with its example counts."""
        return ProjectView(
            self.store.get_project(project_id), self.store.example_counts(project_id)
        )

    def list_projects(self) -> list[ProjectView]:
        """Returns every project, newest first."""
        return [
            ProjectView(project, self.store.example_counts(project.project_id))
            for project in self.store.list_projects()
        ]

    def delete_project(self, project_id: str) -> None:
        """Deletes a project; a model it published stays published (it is a copy)."""
        self.store.get_project(project_id)
        self.jobs.forget_project(project_id)
        self.store.delete_project(project_id)

    async def upload_examples(
        self, project_id: str, examples: AsyncIterator[tuple[str, bytes]]
    ) -> tuple[int, tuple[int, ...]]:
        """Stores every example or none; returns (stored count, counts per label)."""
        upload = self.store.begin_upload(project_id, self.settings.max_examples_per_label)
        loop = asyncio.get_running_loop()
        try:
            position = 0
            async for label, image in examples:
                label_index = upload.label_index(label, position)
                image_format = await loop.run_in_executor(
                    self._decode, self._check_example, image, position
                )
                upload.add(label_index, image, image_format)
                position += 1
        except BaseException:
            upload.discard()
            raise
        return await asyncio.to_thread(upload.commit)

    def _check_example(self, image: bytes, position: int) -> str:
        try:
            decode_image(image, self.settings.image_limits)
        except InvalidImage as exc:
            raise InvalidImage(f"example {position}: {exc.message}", reason=exc.reason) from None
        # decode_image accepted JPEG or PNG and returns RGB pixels; the magic bytes say which.
        return "PNG" if image.startswith(b"\x89PNG") else "JPEG"

    # Training

    def start_training(
        self, project_id: str, params: TrainParams
    ) -> tuple[JobSnapshot, AsyncIterator[JobSnapshot]]:
        """Checks the examples and creates a job; returns it with its events."""
        self._check_trainable(project_id)
        return self.jobs.submit(project_id, params)

    def _check_trainable(self, project_id: str) -> list[Example]:
        project = self.store.get_project(project_id)
        examples = self.store.examples(project_id)
        counts = [0] * len(project.labels)
        for example in examples:
            counts[example.label_index] += 1
        for label, count in zip(project.labels, counts, strict=True):
            if count < MIN_EXAMPLES_PER_LABEL:
                raise FailedPrecondition(
                    f"label {label!r} has {count} examples; training needs at least "
                    f"{MIN_EXAMPLES_PER_LABEL} of every label"
                )
        return examples

    def _run_job(
        self,
        job: JobSnapshot,
        on_epoch: Callable[[train.EpochMetrics], None],
        cancelled: Callable[[], bool],
    ) -> train.EpochMetrics:
        started = time.monotonic()
        project = self.store.get_project(job.project_id)
        examples = self._check_trainable(job.project_id)
        images = [Image.open(example.path).convert("RGB") for example in examples]
        side = self.settings.image_size
        dataset = train.make_dataset(
            images, [e.label_index for e in examples], len(project.labels), side
        )
        network, metrics = train.train(
            dataset, job.params, side, on_epoch=on_epoch, cancelled=cancelled, started=started
        )
        if cancelled():
            raise TrainingCancelled
        counts = [0] * len(project.labels)
        for example in examples:
            counts[example.label_index] += 1
        card = ModelCard(
            labels=project.labels,
            example_counts=tuple(counts),
            data_hash=data_hash(examples),
            seed=job.params.seed,
            epochs=job.params.epochs,
            batch_size=job.params.batch_size,
            learning_rate=job.params.learning_rate,
            validation_split=job.params.validation_split,
            input_size=side,
            metrics={
                "loss": metrics.loss,
                "accuracy": metrics.accuracy,
                "validation_accuracy": metrics.validation_accuracy,
            },
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            project=project.name,
            training_job=job.name,
        )
        save_model(self.store.model_dir(job.project_id, job.job_id), card, network)
        self.store.update_project(job.project_id, latest_training_job=job.job_id)
        return metrics

    # Prediction

    def latest_model(self, project_id: str) -> SavedModel:
        """Returns the project's latest successful model; FailedPrecondition before one."""
        project = self.store.get_project(project_id)
        if not project.latest_training_job:
            raise FailedPrecondition(f"{project.name} has no trained model yet; train it first")
        return self.models.get(self.store.model_dir(project_id, project.latest_training_job))

    async def predict(self, model: SavedModel, image: bytes) -> Ranked:
        """Returns the labels of one image ranked by the model, highest first."""
        return rank(await self.scores(model, image), model.card.labels)

    async def scores(self, model: SavedModel, image: bytes) -> np.ndarray:
        """Returns the model's probability of each of its labels for one image, in their order."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._inference, self._scores, model, image)

    def _scores(self, model: SavedModel, image: bytes) -> np.ndarray:
        card = model.card
        domain = train.image_domain("", card.labels, card.input_size)
        tensor = domain.prepare(image, self.settings.image_limits, card.input_size)
        probabilities = model.predict(torch.from_numpy(tensor)[None])[0]
        return np.asarray(probabilities, dtype=np.float64)

    # Publishing

    async def publish(self, project_id: str, disease: str) -> PublishedModel:
        """Publishes the project's latest model under disease; the gateway learns it by asking."""
        names.validate_disease(disease)
        project = self.store.get_project(project_id)
        if not project.latest_training_job:
            raise FailedPrecondition(f"{project.name} has no trained model to publish")
        published = await self.publisher.publish(project_id, project.latest_training_job, disease)
        self.store.update_project(project_id, published_disease=disease)
        return published

    def published_model(self, disease: str) -> PublishedModel:
        """Returns a published disease's model; UnknownDisease when there is none."""
        return self.published.get(disease)
