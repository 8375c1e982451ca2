"""The browser tests' CSP watch: a page that breaks its policy is seen, so a test would fail."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from tests.browser import conftest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

BROKEN_PAGE = """<!DOCTYPE html>
<html><head>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'self'">
</head><body><p style="color: red">styled inline</p><script>document.title = "ran";</script>
</body></html>"""


def test_a_violation_of_the_policy_is_collected(browser: Browser) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content(BROKEN_PAGE)
        page.wait_for_timeout(500)
        assert page.title() != "ran"  # the inline script was refused
        seen = list(conftest.csp_violations)
    finally:
        context.close()
        # This test broke the policy on purpose: the watch must not fail it.
        conftest.csp_violations.clear()
    assert any("script-src" in text for text in seen), seen
    assert any("style-src" in text for text in seen), seen
