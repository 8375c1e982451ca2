"""Writes of the teach app: projects (on the trainer and here), examples, jobs, publishing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.files.uploadedfile import UploadedFile

from servicekit.errors import InvalidImage
from servicekit.images import decode_image
from web.diagnoses.services import image_limits
from web.gateway_client import (
    GatewayError,
    ModelDescription,
    TrainerProject,
    UploadReceipt,
    get_gateway,
)
from web.teach.models import TeachProject

if TYPE_CHECKING:
    from web.accounts.models import User


@dataclass(frozen=True)
class ExamplesRefused(Exception):
    """An upload of examples that stores nothing, with the HTTP status and what to tell."""

    http_status: int
    code: str
    message: str


def teach_project_create(*, user: User, display_name: str, labels: Sequence[str]) -> TeachProject:
    """Creates the project on the trainer, then its record here; raises GatewayError."""
    created = get_gateway().create_project(display_name=display_name, labels=labels)
    return TeachProject.objects.create(
        owner=user,
        trainer_name=created.name,
        display_name=created.display_name or display_name,
        labels=list(created.labels),
    )


def teach_project_state(*, project: TeachProject) -> TrainerProject:
    """Returns the trainer's view of the project (example counts, latest model)."""
    return get_gateway().get_project(name=project.trainer_name)


def teach_project_delete(*, project: TeachProject) -> None:
    """Deletes the project on the trainer (gone there already is fine), then here."""
    try:
        get_gateway().delete_project(name=project.trainer_name)
    except GatewayError as error:
        if error.code != "NOT_FOUND":
            raise
    project.delete()


def _read(upload: UploadedFile[bytes], max_bytes: int) -> bytes:
    if (upload.size or 0) > max_bytes:
        raise InvalidImage(
            f"the image is larger than {max_bytes // 2**20} MB", reason="IMAGE_TOO_LARGE"
        )
    return b"".join(upload.chunks())


def teach_examples_upload(
    *, project: TeachProject, label: str, uploads: Sequence[UploadedFile[bytes]], max_files: int
) -> UploadReceipt:
    """Checks every image like any upload, then streams them all to the trainer.

    All or nothing: one bad image refuses the whole batch before anything is sent, and
    the trainer itself stores nothing of a call it refuses.
    """
    if label not in project.labels:
        raise ExamplesRefused(400, "UNKNOWN_LABEL", "This label is not one of the project's.")
    if not uploads:
        raise ExamplesRefused(400, "NO_IMAGES", "Choose at least one image.")
    if len(uploads) > max_files:
        raise ExamplesRefused(400, "TOO_MANY_IMAGES", f"Send at most {max_files} images at a time.")
    limits = image_limits()
    images: list[bytes] = []
    for index, upload in enumerate(uploads):
        try:
            data = _read(upload, limits.max_bytes)
            decode_image(data, limits)
        except InvalidImage as error:
            message = f"Image {index + 1}: {error.message.rstrip('.')}."
            raise ExamplesRefused(400, error.reason, message) from None
        images.append(data)
    try:
        return get_gateway().upload_examples(
            project=project.trainer_name, examples=[(label, image) for image in images]
        )
    except GatewayError as error:
        raise ExamplesRefused(error.http_status, error.code, error.message) from None


def teach_job_started(*, project: TeachProject, job_name: str) -> None:
    """Remembers the project's newest training job, so a page opened later can follow it."""
    if job_name and project.latest_job != job_name:
        TeachProject.objects.filter(pk=project.pk).update(latest_job=job_name)
        project.latest_job = job_name


def teach_project_publish(*, project: TeachProject, disease: str) -> ModelDescription:
    """Publishes the project's latest trained model under a disease name; raises GatewayError."""
    model = get_gateway().publish(project=project.trainer_name, disease=disease)
    project.published_disease = model.disease or disease
    project.save(update_fields=["published_disease"])
    return model
