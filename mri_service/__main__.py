"""Runs the MRI service: `python -m mri_service`, configured by MRI_* environment variables."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mri_service.analysis import SeriesAnalyzer
from mri_service.backends import build_backends, read_card
from mri_service.servicer import MriSeriesServicer, binding
from mri_service.settings import Settings
from servicekit.main import run_server
from servicekit.server import ServiceBinding


def build(settings: Settings) -> tuple[Sequence[ServiceBinding], SeriesAnalyzer]:
    """Returns the series servicer over the analyzer of the models the settings name."""
    analyzer = SeriesAnalyzer(
        build_backends(settings),
        read_card(settings.model_dir),
        spool_dir=settings.spool_dir,
        limits=settings.limits,
        rules=settings.rules,
        batch_slices=settings.batch_slices,
        max_concurrent=settings.max_concurrent_series,
        max_queued=settings.max_queued_series,
    )
    return [binding(MriSeriesServicer(analyzer))], analyzer


def main() -> int:
    """Serves until SIGTERM; returns 2 on a bad setting and 1 when the models cannot start."""
    return run_server("mri", Settings.from_env, build)


if __name__ == "__main__":
    sys.exit(main())
