"""The real stack (skin, MRI, trainer, gateway, web) on loopback ports and a headless Chromium."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)

from tests.support.install import installed_tool
from tests.support.processes import (
    ROOT,
    Process,
    free_port,
    start,
    start_trainer,
    wait_until_serving,
)
from tests.tfserving_fake.fixture_model import SHIPPED_MODEL_DIR

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    # A generated camera picture (a moving pattern) and no permission prompt: the teach pages.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
# Where the screenshots are also copied, for people to look at after a run (var/ is ignored).
SCREENSHOT_COPY_DIR = ROOT / "var" / "screenshots"
# Reports every Content-Security-Policy violation of a page to its console, where the
# listener below collects it: the event is the browser's own account of what it refused.
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("CSP violation: " + event.effectiveDirective + " blocked " +
    (event.blockedURI || "inline") + " at " + event.documentURI + ":" + event.lineNumber);
});
"""
# What Chromium itself logs when a policy refuses something (also before any listener runs).
CSP_CONSOLE_MARKERS = ("CSP violation:", "Content Security Policy")
# The violations the current test's pages saw; a test that saw one fails (pytest_runtest_call).
csp_violations: list[str] = []
MODEL_START_TIMEOUT_S = 90.0  # TensorFlow's and torch's imports on 2 shared cores
WEB_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Stack:
    """The running components; `url` is the web tier's base URL."""

    skin: Process
    mri: Process
    trainer: Process
    gateway: Process
    web: Process

    @property
    def url(self) -> str:
        """Returns http://127.0.0.1:PORT of the web tier, without a trailing slash."""
        return f"http://127.0.0.1:{self.web.port}"


class Screenshots:
    """Saves full-page screenshots under the test's tmp dir and copies them to var/screenshots/."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def take(self, page: Page, name: str) -> Path:
        """Saves `name`.png of the whole page and returns its path."""
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        SCREENSHOT_COPY_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT_COPY_DIR / path.name)
        return path


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Installs Chromium with the project's script if missing; fails, never skips, if it cannot."""
    return installed_tool(
        "install_chromium.sh", "Chromium is needed by the browser tests", timeout_s=900
    )


def wait_for_healthz(process: Process, base_url: str, timeout: float) -> None:
    """Waits until GET /healthz answers 200; fails with the process log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited early:\n{process.log()}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{process.name} not answering /healthz after {timeout}s:\n{process.log()}")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Starts the skin and MRI services (shipped models), the trainer, the gateway and the web."""
    started: list[Process] = []
    try:
        skin = start(
            "skin", "skin_service", "SKIN_", env={"SKIN_MODEL_DIR": str(SHIPPED_MODEL_DIR)}
        )
        started.append(skin)
        spool = tmp_path_factory.mktemp("mri-spool")
        mri = start("mri", "mri_service", "MRI_", env={"MRI_SPOOL_DIR": str(spool)})
        started.append(mri)
        # The trainer publishes to the gateway and the gateway routes to the trainer: the
        # gateway's port is chosen first so that each can be told the other's address.
        gateway_port, trainer_port = free_port(), free_port()
        trainer = start_trainer(
            port=trainer_port,
            data_dir=tmp_path_factory.mktemp("trainer"),
        )
        started.append(trainer)
        wait_until_serving(skin, timeout=MODEL_START_TIMEOUT_S)
        wait_until_serving(mri, timeout=MODEL_START_TIMEOUT_S)
        wait_until_serving(trainer, timeout=MODEL_START_TIMEOUT_S)
        routes = ";".join(
            (
                f"skin=image@{skin.address}",
                f"mri=series@{mri.address}",
                f"trainer=trainer@{trainer.address}",
            )
        )
        gateway = start(
            "gateway",
            "gateway",
            "GATEWAY_",
            port=gateway_port,
            env={
                "GATEWAY_ROUTES": routes,
                "GATEWAY_STATE_DIR": str(tmp_path_factory.mktemp("gateway")),
            },
        )
        started.append(gateway)
        wait_until_serving(gateway)
        web_dir = tmp_path_factory.mktemp("web")
        web = start(
            "web",
            "web",
            "WEB_",
            env={
                "DJANGO_SETTINGS_MODULE": "web.config.settings",
                "WEB_DEBUG": "true",
                "WEB_HOST": "127.0.0.1",
                "DATABASE_URL": f"sqlite:///{web_dir / 'db.sqlite3'}",
                "WEB_MEDIA_ROOT": str(web_dir / "media"),
                "WEB_STATIC_ROOT": str(web_dir / "static"),
                "GATEWAY_ADDR": gateway.address,
                "REDIS_URL": "",
            },
        )
        started.append(web)
        result = Stack(skin=skin, mri=mri, trainer=trainer, gateway=gateway, web=web)
        wait_for_healthz(web, result.url, WEB_START_TIMEOUT_S)
        yield result
    finally:
        for process in reversed(started):
            process.terminate()


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this
# thread while it is open, and every async test that runs after it would find that loop.
@pytest.fixture(scope="module")
def playwright_session() -> Iterator[Playwright]:
    """Starts Playwright's driver once for the session."""
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_session: Playwright, chromium_path: str) -> Iterator[Browser]:
    """Launches Debian's Chromium headless (never Playwright's own download)."""
    launched = playwright_session.chromium.launch(
        executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
    )
    _watch_csp(launched)
    try:
        yield launched
    finally:
        launched.close()


def _watch_csp(browser: Browser) -> None:
    """Makes every context this browser opens, and its pages, report CSP violations."""
    new_context, new_page = browser.new_context, browser.new_page

    def watched_context(**kwargs: object) -> BrowserContext:
        context = new_context(**kwargs)  # type: ignore[arg-type]
        context.add_init_script(CSP_REPORTER)
        context.on("console", _collect_csp_violation)
        return context

    def watched_page(**kwargs: object) -> Page:
        page = new_page(**kwargs)  # type: ignore[arg-type]
        page.context.add_init_script(CSP_REPORTER)
        page.on("console", _collect_csp_violation)
        return page

    browser.new_context = watched_context  # type: ignore[method-assign]
    browser.new_page = watched_page  # type: ignore[method-assign]


def _collect_csp_violation(message: ConsoleMessage) -> None:
    if any(marker in message.text for marker in CSP_CONSOLE_MARKERS):
        csp_violations.append(message.text)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fails a browser test whose pages saw a Content-Security-Policy violation."""
    csp_violations.clear()
    result = yield
    if csp_violations:
        seen = "\n".join(dict.fromkeys(csp_violations))
        pytest.fail(f"the pages saw Content-Security-Policy violations:\n{seen}", pytrace=False)
    return result


@pytest.fixture
def screenshots(tmp_path: Path) -> Screenshots:
    """Where this test's screenshots go (and var/screenshots/ too)."""
    return Screenshots(tmp_path / "screenshots")


def pytest_configure(config: pytest.Config) -> None:
    """Registers the `browser` marker (also listed in pyproject.toml's markers)."""
    config.addinivalue_line("markers", "browser: drives headless Chromium against the real stack")
