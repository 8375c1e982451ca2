"""Runs the skin service: `python -m skin_service`, configured by SKIN_* environment variables."""

from __future__ import annotations

import sys

from servicekit.classifier.main import run
from skin_service.backends import build_backend
from skin_service.domain import SKIN
from skin_service.settings import Settings

if __name__ == "__main__":
    sys.exit(run(SKIN, Settings.from_env, build_backend))
