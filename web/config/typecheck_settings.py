"""Settings for type checking only: django-stubs' mypy plugin loads them in development mode."""

import os

os.environ.setdefault("WEB_DEBUG", "true")

from web.config.settings import *  # noqa: F403
