"""A user's teachable-machine project: the web tier's record of a project the trainer holds."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class TeachProject(models.Model):
    """Who owns a trainer project; the trainer itself holds its examples, jobs and models."""

    # Random ids: nobody can guess or count other users' projects from them.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="teach_projects"
    )
    # The trainer's resource name, "projects/{project_id}".
    trainer_name = models.CharField(max_length=100, unique=True)
    display_name = models.CharField(max_length=100)
    labels = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    # The newest training job started from the site, "projects/{id}/trainingJobs/{id}".
    latest_job = models.CharField(max_length=150, blank=True)
    published_disease = models.CharField(max_length=63, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = (models.Index(fields=("owner", "-created_at"), name="teach_owner_created"),)

    def __str__(self) -> str:
        return f"teach project {self.display_name} ({self.trainer_name})"

    @property
    def group_name(self) -> str:
        """Returns the channel-layer group that carries this project's training events."""
        return f"teach-training-{self.pk.hex}"
