"""Reads of the series app: a user's own jobs only, their files (thumbnails, SR, KOS), the plot."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from django.db.models import QuerySet

from web.series.models import SeriesJob
from web.series.storage import REPORT_DIR, REPORT_FILES, THUMBNAIL_DIR, series_root

if TYPE_CHECKING:
    from web.accounts.models import User


def series_job_list(*, user: User) -> QuerySet[SeriesJob]:
    """Returns the user's jobs, newest first."""
    return SeriesJob.objects.filter(user=user).order_by("-created_at")


def series_job_get(*, user: User, job_id: uuid.UUID) -> SeriesJob | None:
    """Returns the user's job with this id; None for anybody else's or a missing one."""
    return SeriesJob.objects.filter(user=user, pk=job_id).first()


def series_thumbnail_path(*, job: SeriesJob, index: int) -> Path | None:
    """Returns the stored thumbnail of one slice, or None when there is none."""
    if not 0 <= index < job.thumbnail_count:
        return None
    path = series_root() / THUMBNAIL_DIR / job.pk.hex / f"{index}.png"
    return path if path.is_file() else None


def series_report_path(*, job: SeriesJob, kind: Literal["sr", "kos"]) -> Path | None:
    """Returns the job's stored, de-identified SR or KOS, or None when it has none."""
    if (job.sr_bytes if kind == "sr" else job.kos_bytes) <= 0:
        return None
    path = series_root() / REPORT_DIR / job.pk.hex / REPORT_FILES[kind]
    return path if path.is_file() else None


@dataclass(frozen=True)
class Curve:
    """One model's per-slice probability as an SVG polyline."""

    model_name: str
    points: str
    css_class: str


@dataclass(frozen=True)
class Plot:
    """The viewer's plot: one curve per model over the slices, in a 0 to 100 box."""

    curves: tuple[Curve, ...]
    width: int
    height: int
    positive_bands: tuple[tuple[float, float], ...]  # (x, width) of each flagged slice


PLOT_WIDTH = 600
PLOT_HEIGHT = 160


def series_plot(*, job: SeriesJob) -> Plot:
    """Returns each model's probability per slice, scaled to the plot's box."""
    slices = job.slices
    count = max(len(slices), 1)
    step = PLOT_WIDTH / count
    models = sorted({name for s in slices for name in s["scores"]})
    curves = tuple(
        Curve(
            model_name=name,
            points=" ".join(
                f"{(i + 0.5) * step:.1f},{_y(float(s['scores'].get(name, 0.0))):.1f}"
                for i, s in enumerate(slices)
            ),
            css_class=f"curve-{position % 4}",
        )
        for position, name in enumerate(models)
    )
    bands = tuple((i * step, step) for i, s in enumerate(slices) if s["positive"])
    return Plot(curves, PLOT_WIDTH, PLOT_HEIGHT, bands)


def _y(probability: float) -> float:
    return (1.0 - min(max(probability, 0.0), 1.0)) * PLOT_HEIGHT
