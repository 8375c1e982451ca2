"""Fixtures of the k8s tests: every overlay rendered once per session."""

from __future__ import annotations

import pytest

from tests.k8s.render import OVERLAYS, KubectlMissing, Manifest, render_overlay


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Returns the objects of each overlay, by overlay name; fails (never skips) without kubectl."""
    try:
        return {overlay: render_overlay(overlay) for overlay in OVERLAYS}
    except KubectlMissing as exc:
        pytest.fail(str(exc), pytrace=False)
