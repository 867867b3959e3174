"""Cloud film end to end in a real browser against `mutualrec serve` loaded with the demo: the
patient signs in and opens a CT from their history in the OHIF viewer, which draws it from our
DICOMweb; the asking hospital's doctor opens the check's open_url and sees the same CT; the
regulator signs in and lands on the dashboard. "Drawn" means the viewport's pixels are not
blank: a screenshot of the viewport has many grey levels, which an empty or failed viewport
(one flat colour, or a spinner) never has. Screenshots are kept under test-artifacts/."""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser import (
    CHROMIUM_MISSING,
    VIEWER_MISSING,
    Browser,
    across_navigation,
    new_browser,
)
from tests.e2e.test_serve import ServeProcess, _spawn

pytestmark = [
    pytest.mark.e2e,
    CHROMIUM_MISSING,
    VIEWER_MISSING,
]
# A viewport that drew a CT slice shows far more grey levels than this; an empty one shows 1-3.
MIN_GREY_LEVELS = 32
# OHIF renders the slice on its own canvas inside each viewport element.
VIEWPORT_CANVAS = "canvas.cornerstone-canvas"


def _demo_env(proc: ServeProcess) -> dict[str, str]:
    """The exports `mutualrec demo` wrote (its keys and its patient)."""
    env_file = Path(proc.env.get("MUTUALREC_DATA_DIR", proc.cwd / "var")) / "demo.env"
    values: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            values[name] = shlex.split(value)[0] if value else ""
    return values


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[ServeProcess, str, dict[str, str]]]:
    """`mutualrec serve` with the demo loaded: the process, its HTTP URL, the demo's exports."""
    for proc in _spawn(tmp_path, {}):
        loaded = proc.cli("demo")
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        line = next(line for line in proc.lines if line.strip().startswith("HTTP:"))
        found = re.search(r"(http://\S+)", line)
        assert found is not None, line
        yield proc, found.group(1), _demo_env(proc)


@pytest.fixture
def browsers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[Browser]]:
    """Three fresh browsers: a patient's, a doctor's, a regulator's."""
    opened: list[Browser] = []
    try:
        for role in ("patient", "doctor", "regulator"):
            opened.append(new_browser(tmp_path / f"profile-{role}", f"cloud-film-{role}"))
        yield opened
    finally:
        for browser in opened:
            try:
                browser.screenshot("end")
            finally:
                browser.driver.quit()


def grey_levels(png: bytes) -> int:
    """How many distinct grey levels a screenshot holds."""
    histogram = Image.open(io.BytesIO(png)).convert("L").histogram()
    return sum(1 for count in histogram if count)


def drawn_viewport(driver: WebDriver) -> bytes | None:
    """A screenshot of the first viewport canvas once it shows an image, else None."""
    canvases = driver.find_elements(By.CSS_SELECTOR, VIEWPORT_CANVAS)
    if not canvases:
        return None
    shot = canvases[0].screenshot_as_png
    return shot if grey_levels(shot) >= MIN_GREY_LEVELS else None


def sign_in(browser: Browser, url: str, credential: str) -> None:
    driver = browser.driver
    driver.get(f"{url}/signin")
    driver.find_element(By.ID, "credential").send_keys(credential)
    driver.find_element(By.ID, "sign-in").click()


def test_patient_doctor_and_regulator_each_reach_their_film_or_figures(
    demo: tuple[ServeProcess, str, dict[str, str]], browsers: list[Browser]
) -> None:
    proc, url, env = demo
    patient, doctor, regulator = browsers
    ct = env["DEMO_CT_STUDY"]

    # The patient: history, then the CT in the viewer, drawn from /dicomweb with the cookie.
    minted = proc.cli("admin", "patient-token", "--patient-id", env["DEMO_PATIENT"])
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    sign_in(patient, url, token)
    patient.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "li.study"))
    # Our pages in the language the browser does not ask for, so that only they can make the
    # viewer speak it (OHIF otherwise follows the browser).
    browser_asks_english = patient.driver.execute_script("return navigator.language").startswith(
        "en"
    )
    wanted = "zh-CN" if browser_asks_english else "en"
    if patient.driver.execute_script("return document.documentElement.lang") != wanted:
        patient.driver.find_element(By.ID, "language").click()
        across_navigation(patient.driver).until(
            lambda d: (
                d.execute_script("return document.documentElement.lang") == wanted
                and d.find_elements(By.CSS_SELECTOR, "li.study")
            )
        )
    link = patient.driver.find_element(
        By.CSS_SELECTOR, f'li.study[data-study-uid="{ct}"] .open-viewer'
    )
    link.click()
    shot = patient.wait_for(drawn_viewport, seconds=90)
    assert grey_levels(shot) >= MIN_GREY_LEVELS
    patient.screenshot("ct-in-viewer")
    # OHIF chose (and keeps) our pages' language, not the browser's.
    assert patient.driver.execute_script("return localStorage.getItem('i18nextLng')") == (
        "zh" if wanted == "zh-CN" else "en-US"
    )
    assert patient.csp_violations() == []
    assert not [u for u in patient.failed_requests() if "/dicomweb/" in u]

    # The asking hospital's doctor: the check's open_url is a link a browser opens; the
    # viewer shows the recognized CT and the session reads nothing else.
    checked = proc.cli(
        "check",
        "--key",
        env["MUTUALREC_API_KEY"],
        "--patient-id",
        env["DEMO_PATIENT"],
        "IMG-CT-CHEST",
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = re.search(r"(http://\S+/open#mro_\S+)", checked.stdout)
    assert found is not None, checked.stdout
    open_url = found.group(1)
    doctor.driver.get(open_url)
    doctor.wait_for(lambda d: d.current_url == f"{url}/viewer/viewer?StudyInstanceUIDs={ct}")
    assert grey_levels(doctor.wait_for(drawn_viewport, seconds=90)) >= MIN_GREY_LEVELS
    doctor.screenshot("open-url-in-viewer")
    # Nothing over the film: OHIF's first-visit tour (Shepherd's tooltips) is turned off.
    assert doctor.driver.find_elements(By.CSS_SELECTOR, ".shepherd-element") == []
    listed = doctor.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/dicomweb/studies', {headers: {Accept: 'application/dicom+json'}})"
        ".then(r => r.json()).then(j => done(j.map(s => s['0020000D'].Value[0])))"
        ".catch(e => done(String(e)));"
    )
    assert listed == [ct]
    assert not any(open_url.split("#", 1)[1] in line for line in proc.lines)

    # The regulator: signing in lands on the dashboard, with the demo's decisions counted.
    sign_in(regulator, url, env["REGULATOR_KEY"])
    regulator.wait_for(lambda d: d.current_url.startswith(f"{url}/regulator"))
    regulator.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "table"))
    assert regulator.driver.find_elements(By.CSS_SELECTOR, "svg")
    regulator.screenshot("dashboard")
    assert regulator.csp_violations() == []


def test_the_history_prerenders_the_newest_studys_viewer_so_its_click_shows_a_started_viewer(
    demo: tuple[ServeProcess, str, dict[str, str]], browsers: list[Browser]
) -> None:
    proc, url, env = demo
    patient = browsers[0]
    minted = proc.cli("admin", "patient-token", "--patient-id", env["DEMO_PATIENT"])
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    sign_in(patient, url, token)
    patient.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "li.study"))
    # Once the page has loaded, its script marks the newest study's link, which the rules named
    # by the Speculation-Rules header prerender at once.
    newest = patient.wait_for(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, "li.study:first-child a.open-viewer.prerender-now"
        )
    )[0]
    assert len(patient.driver.find_elements(By.CSS_SELECTOR, "a.prerender-now")) == 1
    study = patient.driver.find_element(By.CSS_SELECTOR, "li.study:first-child")
    uid = str(study.get_attribute("data-study-uid"))
    target = str(newest.get_attribute("href"))

    def read_ahead(_driver: WebDriver) -> bool:
        """Whether the prerendered viewer has read the study before any click: the patient's
        own accesses, read beside the browser, list its DICOMweb reads marked as made ahead
        (Chromium sends Sec-Purpose on a prerendered page's requests)."""
        accesses = httpx.get(f"{url}/accesses", headers={"Authorization": f"Bearer {token}"})
        assert accesses.status_code == 200, accesses.text
        return any(
            "(fetched ahead by the browser, not yet opened) DICOMweb" in row
            and f"of study {uid}" in row
            for row in accesses.text.split("<tr")
        )

    patient.wait_for(read_ahead, seconds=90)
    assert patient.driver.current_url == f"{url}/"

    newest.click()
    shot = patient.wait_for(drawn_viewport, seconds=90)
    assert grey_levels(shot) >= MIN_GREY_LEVELS
    assert patient.driver.current_url == target
    # The page shown is the prerendered one, activated by the click (0 for a page loaded then).
    activation = patient.driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].activationStart"
    )
    assert activation > 0
    patient.screenshot("prerendered-viewer")
    assert patient.csp_violations() == []
    assert not [u for u in patient.failed_requests() if "/dicomweb/" in u]
