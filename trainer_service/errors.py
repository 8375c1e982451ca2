"""Errors of the trainer service beyond servicekit's table; imports neither grpc nor django."""

from __future__ import annotations

from servicekit.errors import InvalidArgument, NotFound


class ProjectNotFound(NotFound, reason="PROJECT_NOT_FOUND"):
    """No project has the requested name."""


class TrainingJobNotFound(NotFound, reason="TRAINING_JOB_NOT_FOUND"):
    """No training job has the requested name."""


class TooManyExamples(InvalidArgument, reason="TOO_MANY_EXAMPLES"):
    """An upload would take a label past the per-label example limit."""


class TrainingCancelled(Exception):
    """Raised inside the training loop when its job was cancelled; never reaches a caller."""
