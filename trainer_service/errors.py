"""Errors of the trainer service beyond servicekit's table; imports neither grpc nor django."""

from __future__ import annotations

from servicekit.errors import InvalidArgument, NotFound


class ProjectNotFound(NotFound):
    """No project has the requested name."""

    reason = "PROJECT_NOT_FOUND"


class TrainingJobNotFound(NotFound):
    """No training job has the requested name."""

    reason = "TRAINING_JOB_NOT_FOUND"


class TooManyExamples(InvalidArgument):
    """An upload would take a label past the per-label example limit."""

    reason = "TOO_MANY_EXAMPLES"


class TrainingCancelled(Exception):
    """Raised inside the training loop when its job was cancelled; never reaches a caller."""
