"""Removes a deleted record's stored files once the deletion commits, however it was deleted."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from web.diagnoses.models import Diagnosis


@receiver(post_delete, sender=Diagnosis, dispatch_uid="diagnoses.remove_files")
def remove_files_after_delete(sender: type[Diagnosis], instance: Diagnosis, **kwargs: Any) -> None:
    """Queues removal of the image and thumbnail: by the owner, a cascade or the admin."""
    from web.diagnoses.services import diagnosis_files_remove

    names = (instance.image_name, instance.thumbnail_name)

    def remove_diagnosis_files() -> None:
        diagnosis_files_remove(names=names)

    transaction.on_commit(remove_diagnosis_files, robust=True)
