"""Mounts an app's URLs only when this checkout has the app (web apps arrive one by one)."""

from __future__ import annotations

import importlib.util

from django.urls import URLPattern, URLResolver, include, path


def mount(prefix: str, module: str) -> list[URLPattern | URLResolver]:
    """Returns `path(prefix, include(module))` when this checkout has the module, else nothing.

    Apps of the web tier are written one after another; each mounts here by existing.
    A module that exists but fails to import still fails loudly.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return [path(prefix, include(module))] if found else []
