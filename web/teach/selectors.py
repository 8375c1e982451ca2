"""Reads of the teach app: a user's own projects only."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.db.models import QuerySet

from web.teach.models import TeachProject

if TYPE_CHECKING:
    from web.accounts.models import User


def teach_project_list(*, user: User) -> QuerySet[TeachProject]:
    """Returns the user's projects, newest first."""
    return TeachProject.objects.filter(owner=user).order_by("-created_at")


def teach_project_get(*, user: User, project_id: uuid.UUID) -> TeachProject | None:
    """Returns the user's project with this id; None for anybody else's or a missing one."""
    return TeachProject.objects.filter(owner=user, pk=project_id).first()
