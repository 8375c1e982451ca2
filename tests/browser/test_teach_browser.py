"""The teachable machine in Chromium with a fake camera: capture, train, test live, publish."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import Screenshots, Stack
from trainer_service.demo_images import demo_images

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "a-long-Passphrase-for-tests-42"
LABELS = ("left hand", "right hand")
PROJECT_PATH = re.compile(r"/teach/[0-9a-f-]{36}/$")
TIMEOUT_MS = 30_000
TRAIN_TIMEOUT_MS = 120_000


@pytest.fixture
def context(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    created = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900})
    created.set_default_timeout(TIMEOUT_MS)
    try:
        yield created
    finally:
        created.close()


def register(page: Page, *, email: str) -> None:
    page.goto("/accounts/register/")
    page.fill("#id_name", "Tess Teacher")
    page.fill("#id_email", email)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def hold_to_capture(page: Page, label: str, *, at_least: int) -> None:
    """Holds the label's capture button down until at least `at_least` examples are saved."""
    card = page.locator(f'[data-label="{label}"]')
    button = card.get_by_role("button", name="Hold to capture")
    expect(button).to_be_enabled()
    button.hover()
    page.mouse.down()
    page.wait_for_timeout(2000)
    page.mouse.up()
    expect(card).to_have_attribute("data-busy", "false")
    count = card.locator("[data-count]")
    page.wait_for_function(
        "([el, n]) => parseInt(el.textContent, 10) >= n", arg=[count.element_handle(), at_least]
    )


def test_a_person_teaches_trains_tests_and_publishes_a_model(
    context: BrowserContext, screenshots: Screenshots, tmp_path: Path
) -> None:
    page = context.new_page()
    register(page, email="teacher@example.com")
    page.get_by_role("navigation").get_by_role("link", name="Teach", exact=True).click()
    page.fill("#id_display_name", "Hands")
    page.fill("#id_labels", "\n".join(LABELS))
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(PROJECT_PATH)
    expect(page.locator("[data-camera-status]")).to_have_text("Camera on.")

    # The fake camera for both labels, and image files for the second one (the fallback).
    hold_to_capture(page, LABELS[0], at_least=5)
    hold_to_capture(page, LABELS[1], at_least=5)
    files = []
    for i, image in enumerate(demo_images(1, 6, seed=5)):
        path = tmp_path / f"square-{i}.jpg"
        path.write_bytes(image)
        files.append(path)
    second = page.locator(f'[data-label="{LABELS[1]}"]')
    before = int(second.locator("[data-count]").inner_text())
    second.locator("[data-file-picker]").set_input_files(files)
    expect(second).to_have_attribute("data-busy", "false")
    expect(second.locator("[data-count]")).to_have_text(str(before + len(files)))
    expect(second.locator("[data-thumbs] img").first).to_be_visible()
    screenshots.take(page, "teach-capture")

    # Train and watch the chart grow epoch by epoch.
    page.fill("#id_epochs", "6")
    page.fill("#id_batch_size", "8")
    page.get_by_role("button", name="Train", exact=True).click()
    training = page.locator("[data-teach-training]")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-chart] circle.chart-acc').length >= 2",
        timeout=TRAIN_TIMEOUT_MS,
    )
    expect(page.locator("[data-train-timing]")).to_contain_text("Epoch")
    expect(training).to_have_attribute("data-state", "succeeded", timeout=TRAIN_TIMEOUT_MS)
    expect(page.locator("[data-chart] circle.chart-acc")).to_have_count(6)
    expect(page.locator("[data-train-status]")).to_have_text("Trained.")
    expect(page.locator("[data-cancel-button]")).to_be_hidden()
    screenshots.take(page, "teach-training")

    # Live test: predictions arrive and the bars move.
    page.get_by_role("link", name="Test live").click()
    card = page.locator("[data-teach-predict]")
    page.wait_for_function(
        "() => parseInt(document.querySelector('[data-teach-predict]').dataset.predictions"
        " || '0', 10) >= 5"
    )
    expect(card.locator("[data-top-label]")).to_have_text(re.compile("|".join(LABELS)))
    expect(card.locator("[data-fps]")).to_contain_text("predictions/s")
    expect(card).not_to_have_attribute("data-error", re.compile(".+"))
    screenshots.take(page, "teach-test")

    # Publish, then see how to call it.
    page.fill("#id_disease", "hands")
    page.get_by_role("button", name="Publish", exact=True).click()
    expect(page.locator("[data-published]")).to_contain_text("Published as hands")
    expect(page.locator("[data-published]")).to_contain_text("disease=hands")
    expect(page.get_by_text("Not for clinical use.").first).to_be_visible()
    expect(page.locator("[data-predict-status]")).to_have_text("Classifying…")
    screenshots.take(page, "teach-publish")
