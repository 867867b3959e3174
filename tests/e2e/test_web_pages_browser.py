"""End to end in a real browser against `mutualrec serve`: a patient signs in, sees the history
with thumbnails, shares a study (URL and QR code), a doctor's browser opens the link through
/open#token and lands on the study's viewer URL, the patient revokes the link (the doctor's
session ends), reads who accessed the data, and switches language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import VIEWER_MISSING, Browser, across_navigation
from tests.browser_pages import browsers, screenshot  # noqa: F401 - a fixture
from tests.conftest import SAMPLES
from tests.e2e.test_serve import ServeProcess, _register, _spawn

pytestmark = pytest.mark.e2e
WAIT = 30
STUDIES = ("ct_chest_contrast_hosp_a", "dx_chest_2v_hosp_c")


@pytest.fixture
def served(tmp_path: Path, manifest: dict[str, Any]) -> Iterator[tuple[ServeProcess, str, str]]:
    """`mutualrec serve` holding two of one patient's studies: the process, its HTTP URL and a
    patient token minted by the identity provider's stand-in."""
    for proc in _spawn(tmp_path, {}):
        for name in STUDIES:
            study = manifest[name]
            key = _register(proc, study["institution_code"])
            uploaded = proc.cli(
                "upload",
                "--key",
                key,
                "--patient-id",
                study["patient"]["document_number"],
                str(SAMPLES / name),
            )
            assert uploaded.returncode == 0, uploaded.stderr
        patient = manifest[STUDIES[0]]["patient"]["document_number"]
        minted = proc.cli("admin", "patient-token", "--patient-id", patient, "--ttl", "3600")
        assert minted.returncode == 0, minted.stderr
        line = next(line for line in proc.lines if line.strip().startswith("HTTP:"))
        url = re.search(r"(http://\S+)", line).group(1)  # type: ignore[union-attr]
        yield proc, url, minted.stdout.strip()


def wait(driver: WebDriver) -> WebDriverWait[Any]:
    # Clicks here start navigations; a condition may read the page being replaced.
    return across_navigation(driver, WAIT)


def thumbnails_loaded(driver: WebDriver) -> bool:
    """Whether every thumbnail on the page has been fetched and decoded."""
    images = driver.find_elements(By.CSS_SELECTOR, "img.thumb")
    return bool(images) and all(
        driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
        for image in images
    )


def test_a_patient_shares_a_study_that_a_doctor_opens_until_it_is_revoked(
    served: tuple[ServeProcess, str, str],
    browsers: list[WebDriver],  # noqa: F811 - the fixture
    manifest: dict[str, Any],
) -> None:
    proc, url, token = served
    patient, doctor = browsers
    chest = manifest[STUDIES[0]]["study_instance_uid"]

    patient.get(f"{url}/signin")
    assert "登录" in patient.page_source  # Chinese first
    patient.find_element(By.ID, "credential").send_keys(token)
    patient.find_element(By.ID, "sign-in").click()
    wait(patient).until(expected_conditions.presence_of_element_located((By.ID, "filters")))
    assert patient.current_url == f"{url}/"
    cards = patient.find_elements(By.CSS_SELECTOR, "li.study")
    assert {card.get_attribute("data-study-uid") for card in cards} == {
        manifest[name]["study_instance_uid"] for name in STUDIES
    }
    wait(patient).until(thumbnails_loaded)
    links = [
        a.get_attribute("href") for a in patient.find_elements(By.CSS_SELECTOR, ".open-viewer")
    ]
    assert f"{url}/viewer/viewer?StudyInstanceUIDs={chest}" in links
    screenshot(patient, "1-history")

    Select(patient.find_element(By.ID, "filter-modality")).select_by_value("CT")
    patient.find_element(By.ID, "filter-apply").click()
    wait(patient).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.study")) == 1)
    card = patient.find_element(By.CSS_SELECTOR, "li.study")
    assert card.get_attribute("data-study-uid") == chest

    card.find_element(By.CSS_SELECTOR, "details.share summary").click()
    card.find_element(By.CSS_SELECTOR, "input[name=note]").send_keys("Dr Li")
    card.find_element(By.CSS_SELECTOR, ".share-create").click()
    share_url = (
        wait(patient)
        .until(expected_conditions.presence_of_element_located((By.ID, "share-url")))
        .get_attribute("value")
    )
    assert share_url is not None
    assert share_url.startswith(f"{url}/open#mrs_")
    assert patient.find_elements(By.CSS_SELECTOR, "#share-qr svg")
    screenshot(patient, "2-share-link")

    doctor.get(share_url)
    viewer = f"{url}/viewer/viewer?StudyInstanceUIDs={chest}"
    wait(doctor).until(lambda d: d.current_url == viewer)
    screenshot(doctor, "3-doctor-lands-on-viewer")
    share_token = share_url.split("#", 1)[1]
    assert not any(share_token in line for line in proc.lines)

    patient.get(f"{url}/shares")
    entry = patient.find_element(By.CSS_SELECTOR, "li.link-entry")
    assert entry.get_attribute("data-state") == "active"
    entry.find_element(By.CSS_SELECTOR, "button.revoke").click()
    wait(patient).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "li.link-entry").get_attribute("data-state")
            == "revoked"
        )
    )
    screenshot(patient, "4-revoked")
    doctor.get(f"{url}/session")
    wait(doctor).until(lambda d: d.current_url == f"{url}/signin")

    patient.find_element(By.ID, "nav-accesses").click()
    wait(patient).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.access"))
    assert patient.find_elements(By.CSS_SELECTOR, "tr.access")
    screenshot(patient, "5-accesses")

    patient.find_element(By.ID, "language").click()
    wait(patient).until(lambda d: d.execute_script("return document.documentElement.lang") == "en")
    assert patient.current_url == f"{url}/accesses"
    assert "Who accessed my data" in patient.page_source
    screenshot(patient, "6-english")

    patient.find_element(By.ID, "sign-out").click()
    wait(patient).until(lambda d: d.current_url == f"{url}/signin")
    patient.get(f"{url}/")
    wait(patient).until(lambda d: d.current_url == f"{url}/signin")
    assert not any(token in line for line in proc.lines)


@VIEWER_MISSING
def test_the_history_page_fetches_the_viewers_start_files_ahead_within_its_policy(
    served: tuple[ServeProcess, str, str],
    browsers: list[WebDriver],  # noqa: F811 - the fixture
) -> None:
    _proc, url, token = served
    patient = browsers[0]
    viewer_index = httpx.get(f"{url}/viewer/").text
    bundle = re.search(r'src="(/viewer/app\.bundle\.[0-9a-f]{16,}\.js)"', viewer_index)
    assert bundle is not None, viewer_index

    patient.get(f"{url}/signin")
    patient.find_element(By.ID, "credential").send_keys(token)
    patient.find_element(By.ID, "sign-in").click()
    wait(patient).until(expected_conditions.presence_of_element_located((By.ID, "filters")))

    def fetched_ahead(driver: WebDriver) -> list[str]:
        """The viewer's files the page had the browser fetch (as prefetch links), complete."""
        found: list[str] = driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter(e => e.initiatorType === 'link' && e.responseEnd > 0)"
            ".map(e => new URL(e.name).pathname)"
        )
        return [path for path in found if path.startswith("/viewer/")]

    # The app's 17 MB bundle takes a while on a loaded machine.
    fetched = across_navigation(patient, 120).until(
        lambda d: bundle.group(1) in fetched_ahead(d) and fetched_ahead(d)
    )
    assert bundle.group(1) in fetched
    console = Browser(patient, "history-prefetch")
    assert console.csp_violations() == []
    assert [u for u in console.failed_requests() if "/viewer/" in u] == []
    # What was fetched ahead is what the viewer then loads, from the browser's cache.
    cached = httpx.get(f"{url}{bundle.group(1)}")
    assert cached.headers["cache-control"] == "public, max-age=31536000, immutable"
