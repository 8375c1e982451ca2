"""Runs the MRI service: `python -m mri_service`, configured by MRI_* environment variables."""

from __future__ import annotations

import asyncio
import sys

from mri_service.analysis import SeriesAnalyzer
from mri_service.backends import build_backends, read_card
from mri_service.servicer import MriSeriesServicer, binding
from mri_service.settings import Settings
from servicekit.errors import MedimgError
from servicekit.logging_setup import configure_logging
from servicekit.server import serve
from servicekit.settings import SettingsError


def main() -> int:
    """Serves until SIGTERM; returns 2 on a bad setting and 1 when the models cannot start."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"mri: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.server)
    try:
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
        asyncio.run(
            serve(settings.server, [binding(MriSeriesServicer(analyzer))], lifecycle=analyzer)
        )
    except (MedimgError, OSError) as exc:
        # Models that cannot load or a port that is taken: one line, no traceback.
        print(f"mri: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
