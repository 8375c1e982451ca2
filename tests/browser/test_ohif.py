"""medimg's DICOM result in a real viewer: OHIF shows the SR's findings on the study's images."""

from __future__ import annotations

import io
import os
import shutil
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, Route, expect

from mri_service.domain import MODEL_NAMES
from mri_service.report import KEY_IMAGES_SERIES_NUMBER, REPORT_SERIES_NUMBER
from tests.browser.conftest import Screenshots
from tests.support.processes import ROOT

if TYPE_CHECKING:  # imported for real by pytest_plugins, so that pytest rewrites its asserts
    from tests.browser.ohif_fixtures import Viewer

# The fixtures (Orthanc, OHIF, the analysed study) live beside conftest.py, not in it.
pytest_plugins = ["tests.browser.ohif_fixtures"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOC_SCREENSHOT = ROOT / "docs" / "images" / "ohif-report.png"
UPDATE_DOC_ENV = "MEDIMG_UPDATE_DOC_SCREENSHOTS"
# OHIF fetches and compiles about 10 MB of JavaScript and decodes the series on 2 busy cores.
LOAD_TIMEOUT_MS = 90_000
STEP_TIMEOUT_MS = 30_000
# OHIF's first visit shows an onboarding tour and an investigational-use notice over the
# viewer; a person dismisses each once and OHIF remembers it in the browser's storage.
FIRST_VISIT_SEEN = """
localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
sessionStorage.setItem('investigationalUseDialog', 'hidden');
"""


def probability_text(value: float) -> str:
    """Returns a probability as OHIF labels it: two decimals, halves rounded up (toFixed)."""
    rounded = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"Probability: {rounded}"


def wait_for_picture(canvas: Locator, timeout_ms: int) -> np.ndarray:
    """Waits until the canvas shows an image, not a blank or flat area; returns its pixels.

    The canvas is read through a screenshot: Cornerstone draws with WebGL, whose buffer
    a page script cannot read back once the frame is shown.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
        lit = float((pixels > 24).mean())
        if pixels.std() > 20 and lit > 0.2:
            return pixels
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the viewport stayed blank: std {pixels.std():.1f}, {lit:.0%} of pixels lit"
            )
        canvas.page.wait_for_timeout(250)


def annotation_text(page: Page) -> str:
    """Returns the text of the viewport's annotation layer (SVG), where SR labels are drawn."""
    texts: list[str] = page.evaluate(
        "() => Array.from(document.querySelectorAll('[data-cy=\"viewport-pane\"] svg text'),"
        " t => t.textContent)"
    )
    return " ".join(texts)


def test_ohif_shows_the_measurement_report_beside_the_images(
    browser: Browser, viewer: Viewer, screenshots: Screenshots
) -> None:
    flagged = viewer.study.flagged
    assert len(flagged) >= 2, "the phantom was chosen for a report with two findings"
    # Wide enough that the label OHIF draws beside a whole-image ROI fits in the viewport.
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.add_init_script(FIRST_VISIT_SEEN)
    elsewhere: list[str] = []

    def loopback_only(route: Route) -> None:
        # The viewer must work with nothing but its origin: no CDN, no fonts, no telemetry.
        if route.request.url.startswith(viewer.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", loopback_only)
    page = context.new_page()
    shot = None
    try:
        page.goto(viewer.study_url())
        # Served as in the cluster: isolated, so OHIF decodes with its SharedArrayBuffer path.
        assert page.evaluate("() => window.crossOriginIsolated") is True

        # The study browser lists the four phases and, beside them, medimg's two documents.
        report = page.locator(
            f'[data-cy="study-browser-thumbnail-no-image"][data-series="{REPORT_SERIES_NUMBER}"]'
        )
        key_images = page.locator(
            f'[data-cy="study-browser-thumbnail-no-image"]'
            f'[data-series="{KEY_IMAGES_SERIES_NUMBER}"]'
        )
        expect(page.locator('[data-cy="study-browser-thumbnail"]')).to_have_count(
            4, timeout=LOAD_TIMEOUT_MS
        )
        expect(report).to_contain_text("SR")
        expect(report).to_contain_text("medimg tumour slices")
        expect(report).to_contain_text("NOT FOR CLINICAL USE")
        expect(key_images).to_contain_text("KO")

        # The default layout shows the first series: a real image on the canvas.
        canvas = page.locator('[data-cy="viewport-pane"] canvas').first
        wait_for_picture(canvas, LOAD_TIMEOUT_MS)

        # Opening the report: its first finding on the pre-contrast image it names.
        # The click goes to the row's lower line: the description's tooltip covers the top.
        report.dblclick(position={"x": 40, "y": 33})
        # OHIF offers to import the findings into its measurement tools; it cannot with a
        # TID 1410 ROI (docs/viewer/README.md), and declining keeps the report's own view.
        expect(page.get_by_text("Do you want to continue tracking measurements")).to_be_visible(
            timeout=LOAD_TIMEOUT_MS
        )
        page.get_by_role("button", name="No", exact=True).click()
        expect(page.get_by_text("Do you want to continue tracking measurements")).to_be_hidden()
        instance = page.locator('[data-cy="viewport-overlay-bottom-right"]')
        # OHIF 3.13 sometimes leaves the first finding's label undrawn when the report opens
        # (3 runs in 14 here; no error logged); going to a finding with the viewport's
        # arrows always draws it. So the test goes there and back, as a reader would.
        expect(instance).to_contain_text(f"I:{flagged[0].index + 1} ")
        page.locator('[data-cy="viewport-action-arrows-right"]').click()
        expect(instance).to_contain_text(f"I:{flagged[1].index + 1} ")
        page.locator('[data-cy="viewport-action-arrows-left"]').click()
        for number, finding in enumerate(flagged):
            if number:
                page.locator('[data-cy="viewport-action-arrows-right"]').click()
            expected = [probability_text(dict(finding.scores)[m]) for m in MODEL_NAMES]
            # Instance numbers follow the anatomical order, from 1 (mri_service.phantom).
            expect(instance).to_contain_text(f"I:{finding.index + 1} ")
            expect(page.locator('[data-cy="viewport-pane"] svg text').first).to_contain_text(
                expected[0], timeout=LOAD_TIMEOUT_MS
            )
            label = annotation_text(page)
            for text in expected:
                assert text in label, (text, label)
            pixels = wait_for_picture(canvas, STEP_TIMEOUT_MS)
            assert pixels.shape[0] > 200, pixels.shape
            if number == 0:
                shot = screenshots.take(page, "ohif-report")
        assert not elsewhere, f"OHIF reached beyond its origin: {elsewhere}"
    except Exception:
        # What the page showed when it went wrong, for whoever reads the failure.
        screenshots.take(page, "ohif-failure")
        raise
    finally:
        context.close()
    assert shot is not None
    # The documented picture is refreshed only when asked: a test run leaves the checkout clean.
    if os.environ.get(UPDATE_DOC_ENV) == "1":
        DOC_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOC_SCREENSHOT)
