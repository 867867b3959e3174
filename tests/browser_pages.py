"""Headless Chromium for the web pages' tests: Debian's chromium and chromedriver driven by
Selenium, each browser with a fresh profile, and screenshots kept under test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from tests import browser
from tests.conftest import REPO, skip_or_fail

ARTIFACTS = REPO / "test-artifacts" / "web-pages"
# A phone's screen: the pages are used on one.
PHONE_WINDOW = "412,915"


def open_chromium(
    profile: Path, window: str = PHONE_WINDOW, languages: str = "zh-CN,zh,en"
) -> webdriver.Chrome:
    """A headless Chromium (see :func:`tests.browser.open_chromium`) on a phone's screen,
    asking for Chinese first (a patient of the region's), by default."""
    return browser.open_chromium(profile, window, languages)


@pytest.fixture
def browsers(tmp_path: Path) -> Iterator[list[webdriver.Chrome]]:
    """Two independent browsers (a patient's, a doctor's), each with its own profile, quit at
    the end."""
    reason = browser.chromium_unavailable()
    if reason is not None:
        skip_or_fail(reason)
    drivers: list[webdriver.Chrome] = []
    try:
        for name in ("patient", "doctor"):
            drivers.append(open_chromium(tmp_path / f"profile-{name}"))
        yield drivers
    finally:
        for driver in drivers:
            driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Keep what the browser shows now as ``test-artifacts/web-pages/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
