"""What `python -m web` and `manage.py` do before Django runs: create local state folders."""

from __future__ import annotations

from django.conf import settings


def uses_sqlite() -> bool:
    """Tells whether the database is SQLite (the development default)."""
    return bool(settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3")


def prepare_local_state() -> None:
    """Creates the SQLite file's folder, which SQLite will not create itself."""
    if uses_sqlite():
        name = str(settings.DATABASES["default"]["NAME"])
        if name and name != ":memory:" and not name.startswith("file:"):
            from pathlib import Path

            Path(name).parent.mkdir(parents=True, exist_ok=True)
