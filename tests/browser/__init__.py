"""Browser tests: Playwright drives Debian's Chromium headless against the real stack."""
