"""A real headless Chromium (Debian's chromium and chromedriver, driven by Selenium) for tests
of what the HTTP door serves to browsers: a fixture making a fresh browser per test, its console
log read back (failed requests and Content-Security-Policy violations are SEVERE entries there),
and screenshots saved under ``test-artifacts/`` (gitignored) when a test wants one or fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from mutualrec.viewer_install import INSTALLED_MARK, default_dir
from tests.conftest import unless_installed

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# No GPU, no sandbox (containers), and nothing the browser would fetch on its own behalf.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# A desktop's window, in CSS pixels (the pages' tests also use a phone's).
DESKTOP_WINDOW = "1280,900"


def chromium_unavailable() -> str | None:
    """Why no browser can be driven here, or None."""
    for tool in (Path(CHROMIUM), Path(CHROMEDRIVER)):
        if not tool.exists():
            return f"{tool} is missing (make test-tools installs it)"
    return None


CHROMIUM_MISSING = unless_installed(
    chromium_unavailable() is not None,
    "Debian's chromium and chromedriver are missing: run `make test-tools`",
)
VIEWER_MISSING = unless_installed(
    not (default_dir() / INSTALLED_MARK).is_file(),
    "the OHIF viewer is not installed: run `make install`",
)
_FAILED_REQUEST = re.compile(r"^(\S+) - Failed to load resource")
_CSP = re.compile(r"Content Security Policy|Refused to (load|execute|apply|create|connect)")


@dataclass
class Browser:
    """One Chromium session and what its console said."""

    driver: webdriver.Chrome
    name: str
    entries: list[dict[str, Any]] = field(default_factory=list)

    def log(self) -> list[dict[str, Any]]:
        """Every console entry so far (Chromium hands each out once; kept here)."""
        self.entries += self.driver.get_log("browser")
        return self.entries

    def failed_requests(self) -> list[str]:
        """URLs whose load failed (an HTTP error or a network failure)."""
        failed = []
        for entry in self.log():
            match = _FAILED_REQUEST.match(str(entry.get("message", "")))
            if match:
                failed.append(match.group(1))
        return failed

    def csp_violations(self) -> list[str]:
        """Console messages reporting a Content-Security-Policy violation."""
        return [str(e["message"]) for e in self.log() if _CSP.search(str(e.get("message", "")))]

    def screenshot(self, label: str) -> Path:
        """Save what the page shows as ``test-artifacts/<test>-<label>.png``."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.driver.save_screenshot(str(path))
        return path

    def wait_for(self, condition: Callable[[webdriver.Chrome], Any], seconds: float = 60) -> Any:
        """``condition``'s first truthy value, polled until ``seconds`` pass (then a failure
        with a screenshot)."""
        deadline = time.monotonic() + seconds
        while True:
            value = condition(self.driver)
            if value:
                return value
            if time.monotonic() > deadline:
                shot = self.screenshot("timeout")
                pytest.fail(f"the page never got there (screenshot: {shot})")
            time.sleep(0.25)


def across_navigation(driver: webdriver.Chrome, seconds: float = 30) -> WebDriverWait[Any]:
    """A wait whose condition may run while a click's navigation replaces the page: the old
    document's elements then fail with stale-element or "Node ... does not belong to the
    document" errors (ChromeDriver's unknown error), which mean "not yet", so they are retried
    until ``seconds`` pass, like a false condition."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(WebDriverException,))


def open_chromium(
    profile: Path, window: str = DESKTOP_WINDOW, languages: str | None = None
) -> webdriver.Chrome:
    """A fresh headless Chromium with its own profile folder, its console kept for
    :meth:`Browser.log`, sized ``window`` and asking for ``languages`` (Accept-Language) when
    given. The one way every browser test starts Chromium."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window}")
    if languages is not None:
        options.add_experimental_option("prefs", {"intl.accept_languages": languages})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    return driver


def new_browser(profile: Path, name: str) -> Browser:
    """A fresh headless desktop Chromium with its own profile folder."""
    return Browser(open_chromium(profile), name)


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A headless Chromium for one test; what its page last showed is kept as a screenshot
    (``test-artifacts/<test>-end.png``), passed or failed."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    opened = new_browser(tmp_path / "chromium-profile", name)
    try:
        yield opened
    finally:
        try:
            opened.screenshot("end")
        finally:
            opened.driver.quit()
