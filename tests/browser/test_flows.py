"""What a person does in the browser, against the real stack: from registering to logging out."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import (
    APIRequestContext,
    Browser,
    BrowserContext,
    FilePayload,
    Page,
    Playwright,
    expect,
)

from mri_service.phantom import PhantomSpec, generate_series, write_series_zip
from skin_service.data import generate_image
from tests.browser.conftest import Screenshots, Stack
from tests.tfserving_fake.fixture_model import shipped_model_present

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not shipped_model_present(), reason="the shipped skin demo model is absent"),
]

LABELS = ("Melanoma", "Common nevus", "Atypical nevus")
PASSWORD = "a-long-Passphrase-for-tests-42"
DETAIL_PATH = re.compile(r"/diagnose/(?P<id>[0-9a-f-]{36})/$")
SERIES_PATH = re.compile(r"/series/(?P<id>[0-9a-f-]{36})/$")
TIMEOUT_MS = 30_000
SERIES_TIMEOUT_MS = 60_000
# Runs in every page: notes in sessionStorage (it survives the page changes) each progress
# display the page shows, the upload's bar and the job's live progress card.
RECORD_PROGRESS = """
(() => {
  const note = (kind, text) => {
    const seen = JSON.parse(sessionStorage.getItem("progress-seen") || "[]");
    seen.push({kind, text});
    sessionStorage.setItem("progress-seen", JSON.stringify(seen));
  };
  const timer = setInterval(() => {
    const upload = document.querySelector("[data-upload-progress]");
    if (upload && !upload.hidden) { note("upload", upload.innerText.trim()); }
    const job = document.querySelector("[data-job-progress]");
    if (job) { note("job", job.innerText.trim()); }
  }, 25);
  window.addEventListener("pagehide", () => clearInterval(timer));
})();
"""


def lesion_jpeg(seed: int) -> bytes:
    """Returns a generated dermoscopy-like lesion photo as JPEG bytes."""
    buffer = io.BytesIO()
    generate_image("melanoma", np.random.default_rng(seed)).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture
def context(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) on the web tier, desktop-sized."""
    opened = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900})
    opened.set_default_timeout(TIMEOUT_MS)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def api(playwright_session: Playwright, stack: Stack) -> Iterator[APIRequestContext]:
    """A plain HTTP client for the API, with no browser cookies."""
    client = playwright_session.request.new_context(base_url=stack.url)
    try:
        yield client
    finally:
        client.dispose()


def register(page: Page, *, name: str, email: str) -> None:
    page.goto("/accounts/register/")
    page.fill("#id_name", name)
    page.fill("#id_email", email)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Log in").first).to_be_visible()


def log_in(page: Page, *, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def upload_lesion(page: Page, *, seed: int, screenshots: Screenshots | None = None) -> str:
    """Chooses a generated photo on /diagnose/, submits it and returns the diagnosis id."""
    page.goto("/diagnose/")
    photo: FilePayload = {
        "name": "lesion.jpg",
        "mimeType": "image/jpeg",
        "buffer": lesion_jpeg(seed),
    }
    page.set_input_files("#id_image", files=photo)
    expect(page.locator("[data-preview]")).to_be_visible()
    if screenshots is not None:
        screenshots.take(page, "1-upload")
    page.get_by_role("button", name="Diagnose").click()
    page.wait_for_url(DETAIL_PATH)
    found = DETAIL_PATH.search(page.url)
    assert found is not None, page.url
    return found["id"]


@pytest.fixture(scope="module")
def series_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated breast DCE-MRI phantom with a lesion: 24 slices of 128 by 128, zipped.

    Near the demo models' training data (32 slices of 256 px); a 64 px phantom is far
    enough from it that the models flag every slice.
    """
    series = generate_series(PhantomSpec(slices=24, size=128, lesion=True, seed=424242))
    return write_series_zip(series, tmp_path_factory.mktemp("series") / "phantom.zip")


def upload_series(page: Page, *, series_zip: Path) -> str:
    """Uploads the zip on /series/, waits for its job page and returns the job id."""
    page.goto("/series/")
    page.set_input_files("#id_series", files=str(series_zip))
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_url(SERIES_PATH)
    found = SERIES_PATH.search(page.url)
    assert found is not None, page.url
    return found["id"]


def api_token(api: APIRequestContext, *, email: str) -> str:
    response = api.post("/api/v1/auth/token/", data={"email": email, "password": PASSWORD})
    assert response.status == 200, response.text()
    return str(response.json()["token"])


def test_a_person_registers_logs_in_diagnoses_a_lesion_and_a_series_and_logs_out(
    context: BrowserContext, screenshots: Screenshots, series_zip: Path
) -> None:
    context.add_init_script(RECORD_PROGRESS)
    page = context.new_page()
    register(page, name="Alice Example", email="alice@example.com")
    log_out(page)
    log_in(page, email="alice@example.com")

    upload_lesion(page, seed=7, screenshots=screenshots)
    label = page.locator("[data-top-label]")
    expect(label).to_be_visible()
    assert label.inner_text().strip() in LABELS
    bars = page.locator("[data-probabilities] li")
    expect(bars).to_have_count(3)
    assert {bars.nth(i).locator(".prob-label").inner_text() for i in range(3)} == set(LABELS)
    widths = [float(bars.nth(i).locator("rect").get_attribute("width") or "nan") for i in range(3)]
    assert sum(widths) == pytest.approx(100.0, abs=0.5)
    assert max(widths) == float(page.locator(".prob-top rect").get_attribute("width") or "nan"), (
        "the top class is the one highlighted"
    )
    expect(page.locator(".result-body")).to_contain_text(re.compile("not for clinical use", re.I))
    expect(page.get_by_alt_text("The uploaded photo")).to_be_visible()
    screenshots.take(page, "2-result")

    page.get_by_role("link", name="History", exact=True).first.click()
    page.wait_for_url("**/history/")
    cards = page.locator("[data-history] > li")
    expect(cards).to_have_count(1)
    expect(cards.first.locator(".history-label")).to_have_text(
        re.compile("|".join(LABELS)), use_inner_text=True
    )
    expect(page.locator("main")).to_contain_text(re.compile("not for clinical use", re.I))
    screenshots.take(page, "3-history")

    page.get_by_role("link", name="MRI series").click()
    page.wait_for_url("**/series/")
    page.set_input_files("#id_series", files=str(series_zip))
    screenshots.take(page, "4-series-upload")
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_url(SERIES_PATH)
    if page.locator("[data-job-progress]").count():
        screenshots.take(page, "5-series-progress")
    # The job page reloads itself once the analysis is done, showing the slice viewer.
    strip = page.locator("[data-slice-strip]")
    expect(strip).to_be_visible(timeout=SERIES_TIMEOUT_MS)
    seen = json.loads(page.evaluate("sessionStorage.getItem('progress-seen') || '[]'"))
    assert any(entry["kind"] == "upload" for entry in seen), "the upload's progress was shown"
    assert any(re.search(r"\d+%", entry["text"]) for entry in seen), seen
    expect(strip.locator("[data-slice]")).to_have_count(24)
    flagged = strip.locator("[data-positive]")
    assert 1 <= flagged.count() < 24, "the lesion's slices are flagged, not the whole series"
    expect(flagged.first.get_by_text("flagged")).to_be_visible()
    expect(page.locator("[data-summary]")).to_contain_text(f"{flagged.count()} of 24 slices")
    expect(page.locator("main")).to_contain_text(re.compile("not for clinical use", re.I))
    page.wait_for_load_state("networkidle")
    screenshots.take(page, "6-series-viewer")

    log_out(page)
    page.goto("/history/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_another_user_cannot_see_a_diagnosis_or_series_by_page_api_or_image_url(
    context: BrowserContext,
    browser: Browser,
    stack: Stack,
    api: APIRequestContext,
    series_zip: Path,
) -> None:
    alice = context.new_page()
    register(alice, name="Alice Owner", email="alice.owner@example.com")
    diagnosis_id = upload_lesion(alice, seed=21)
    job_id = upload_series(alice, series_zip=series_zip)
    expect(alice.locator("[data-slice-strip]")).to_be_visible(timeout=SERIES_TIMEOUT_MS)
    pages = [f"/diagnose/{diagnosis_id}/{suffix}" for suffix in ("", "delete/")]
    pages += [f"/series/{job_id}/{suffix}" for suffix in ("", "delete/")]
    images = [f"/diagnose/{diagnosis_id}/{suffix}" for suffix in ("image", "thumbnail")]
    images += [f"/series/{job_id}/progress", f"/series/{job_id}/slices/0.png"]
    api_urls = [f"/api/v1/diagnoses/{diagnosis_id}/{s}" for s in ("", "image/", "thumbnail/")]
    api_urls += [f"/api/v1/series/{job_id}/"]
    # Alice herself reaches every one of them: the 404s below are about ownership.
    for url in pages + images:
        assert alice.request.get(url).status == 200, url
    alice_token = api_token(api, email="alice.owner@example.com")
    for url in api_urls:
        response = api.get(url, headers={"Authorization": f"Token {alice_token}"})
        assert response.status == 200, url

    bob_context = browser.new_context(base_url=stack.url)
    try:
        bob = bob_context.new_page()
        register(bob, name="Bob Other", email="bob@example.com")
        for url in pages:
            shown = bob.goto(url)
            assert shown is not None and shown.status == 404, url
            expect(bob.locator("main")).not_to_contain_text("Most likely")
            expect(bob.locator("[data-slice-strip]")).to_have_count(0)
        for url in images:
            assert bob.request.get(url).status == 404, url
        bob.goto("/history/")
        expect(bob.locator("[data-history]")).to_have_count(0)
        bob.goto("/series/")
        expect(bob.locator(f"a[href*='{job_id}']")).to_have_count(0)
    finally:
        bob_context.close()

    bob_token = api_token(api, email="bob@example.com")
    bob_headers = {"Authorization": f"Token {bob_token}"}
    for url in api_urls:
        response = api.get(url, headers=bob_headers)
        assert response.status == 404, url
    listed = api.get("/api/v1/diagnoses/", headers=bob_headers)
    assert listed.status == 200 and listed.json()["results"] == []
