"""The regulators' dashboard in a real browser: Debian's headless Chromium, driven by its
chromedriver, loads the page from the real HTTP door under the page's own CSP.

A browser sends no Bearer header of its own; until the browser session (a cookie) exists, the
regulator's key is added to every request the browser makes by Chromium's DevTools
(``Network.setExtraHTTPHeaders``), the stylesheet's included.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mutualrec.security.access import REGULATOR
from tests.browser import across_navigation, chromium_unavailable, open_chromium
from tests.conftest import RunningServer, make_settings, new_key, skip_or_fail, start_server
from tests.integration.test_regulator_dashboard import (
    BY_DISTRICT,
    BY_ITEM,
    _month_before_last,
    _record,
)

# A phone's screen, in CSS pixels.
PHONE = (390, 844)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    reason = chromium_unavailable()
    if reason is not None:
        skip_or_fail(reason)

    # A regulator's browser in Chongqing asks for Chinese.
    driver = open_chromium(tmp_path / "chromium-profile", f"{PHONE[0]},{PHONE[1]}", "zh-CN,zh")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


@pytest.fixture
def region(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    settings = make_settings(
        tmp_path, MUTUALREC_DATABASE_URL=f"sqlite:///{tmp_path / 'index.sqlite3'}"
    )
    for server in start_server(settings):
        _record(server, _month_before_last()[0])
        with server.runtime.sessions.begin() as session:
            key = new_key(session, REGULATOR)
        yield server, key


def _loaded(driver: Any, url_part: str) -> bool:
    """Whether the page whose address holds ``url_part`` has loaded."""
    return (
        url_part in driver.current_url
        and driver.execute_script("return document.readyState") == "complete"
    )


def test_the_dashboard_in_a_phone_sized_headless_chromium(
    browser: object, region: tuple[RunningServer, str]
) -> None:
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    assert isinstance(browser, WebDriver)
    driver = browser
    server, key = region
    first, last = _month_before_last()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {key}"}}
    )
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 3, "mobile": True},
    )

    driver.get(f"{server.http_url}/regulator?from_date={first}&to_date={last}")

    assert driver.title == "互认节省统计"
    rows = driver.find_elements(By.CSS_SELECTOR, "table.report tbody tr")
    assert sorted(row.get_attribute("data-key") for row in rows) == sorted(BY_DISTRICT)
    saving_bars = driver.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar.saving")
    assert len(saving_bars) == len(BY_DISTRICT)
    # Every group saved something here: each bar is drawn with a width on the screen.
    assert all(bar.size["width"] > 0 for bar in saving_bars)
    # The stylesheet loaded under the page's CSP and styles the SVG by class.
    fill = driver.execute_script(
        "return getComputedStyle(document.querySelector('svg.chart rect.bar.saving')).fill"
    )
    assert fill == "rgb(176, 58, 46)"
    # Nothing wider than the phone: the table scrolls inside its own box.
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert widths[0] <= widths[1]
    # No console message at all: a refused script, style or load would be one.
    assert [entry["message"] for entry in driver.get_log("browser")] == []

    # The form: group by item, in English.
    Select(driver.find_element(By.NAME, "group_by")).select_by_value("item")
    driver.find_element(By.CSS_SELECTOR, "form.query button[type=submit]").click()
    # A click returns before the navigation it starts ends.
    across_navigation(driver).until(lambda d: _loaded(d, "group_by=item"))
    rows = driver.find_elements(By.CSS_SELECTOR, "table.report tbody tr")
    assert sorted(row.get_attribute("data-key") for row in rows) == sorted(BY_ITEM)
    driver.find_element(By.CSS_SELECTOR, "a.language").click()
    across_navigation(driver).until(lambda d: _loaded(d, "lang=en"))
    assert driver.title == "Recognition savings"
    assert "group_by=item" in driver.current_url

    # A bad period typed in: the page again, the field marked.
    driver.get(f"{server.http_url}/regulator?from_date={last}&to_date={first}")
    assert driver.find_element(By.CSS_SELECTOR, ".errors li").get_attribute("data-field") == (
        "to_date"
    )
    assert driver.find_elements(By.CSS_SELECTOR, "input[aria-invalid=true]")
