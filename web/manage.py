#!/usr/bin/env python
"""Django's command line for the web tier: `python web/manage.py migrate`, `createsuperuser`."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    """Runs the Django command named on the command line."""
    # Run as a script from anywhere: the checkout (or site-packages) that holds web/ goes first.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.config.settings")
    from django.core.management import execute_from_command_line

    from web.config.bootstrap import prepare_local_state

    prepare_local_state()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
