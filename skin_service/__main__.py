"""Runs the skin service: `python -m skin_service`, configured by SKIN_* environment variables."""

from __future__ import annotations

import asyncio
import os
import sys

from servicekit.errors import MedimgError
from servicekit.logging_setup import configure_logging
from servicekit.server import serve
from servicekit.settings import SettingsError
from skin_service.backends import build_backend
from skin_service.servicer import SkinDiagnosisServicer, binding
from skin_service.settings import Settings


def main() -> int:
    """Serves until SIGTERM; returns 2 on a bad setting and 1 when the model cannot start."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"skin: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.server)
    # TensorFlow's C++ start-up chatter bypasses `logging` and would break JSON log lines;
    # errors still show. Set before TensorFlow loads; an operator's own value wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    servicer = SkinDiagnosisServicer(
        build_backend(settings), batcher=settings.batcher, image_limits=settings.image_limits
    )
    try:
        asyncio.run(serve(settings.server, [binding(servicer)], lifecycle=servicer))
    except (MedimgError, OSError) as exc:
        # A model that cannot load or a port that is taken: one line, no traceback.
        print(f"skin: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
