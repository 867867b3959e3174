"""The OHIF viewer as `mutualrec serve` serves it, in a real headless Chromium: the app shell
loads under /viewer/ with every asset found and no Content-Security-Policy violation, while the
rest of the site keeps the strict policy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mutualrec.viewer_install import default_dir
from tests.browser import CHROMIUM_MISSING, VIEWER_MISSING, Browser, browser
from tests.e2e.test_serve import ServeProcess, _spawn

__all__ = ["browser"]  # the fixture, imported for the tests below


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServeProcess]:
    yield from _spawn(tmp_path, {})


def _viewer_url(served: ServeProcess) -> str:
    """The viewer's URL as `serve` prints it at start."""
    match = re.search(r"viewer:\s+(\S+)", "\n".join(served.lines))
    assert match is not None, "\n".join(served.lines)
    return match.group(1)


@VIEWER_MISSING
def test_the_viewer_is_served_under_viewer_with_its_own_policy(served: ServeProcess) -> None:
    url = _viewer_url(served)
    assert url.endswith("/viewer/")
    page = httpx.get(url)
    assert page.status_code == 200
    assert 'src="/viewer/app-config.js"' in page.text
    assert "<script>" not in page.text  # no inline script: the policy allows none
    policy = page.headers["content-security-policy"]
    assert "'wasm-unsafe-eval'" in policy
    assert "'unsafe-eval'" not in policy.replace("'wasm-unsafe-eval'", "")
    assert "script-src 'self' 'wasm-unsafe-eval';" in policy
    # A route of the app is its page; the rest of the site keeps the strict policy.
    route = httpx.get(url + "viewer?StudyInstanceUIDs=1.2.3")
    assert route.status_code == 200
    assert route.text == page.text
    assert httpx.get(url.removesuffix("/"), follow_redirects=False).status_code == 308
    health = httpx.get(url.replace("/viewer/", "/healthz"))
    assert health.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert httpx.get(url + "../../etc/passwd").status_code in (200, 404)  # never outside
    # Files named by their content's hash are kept for good; the server's own, revalidated.
    bundle = re.search(r'src="/viewer/(app\.bundle\.[0-9a-f]{16,}\.js)"', page.text)
    assert bundle is not None, page.text
    kept = httpx.get(url + bundle.group(1))
    assert kept.status_code == 200
    assert kept.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert httpx.get(url + "app-config.js").headers["cache-control"] == "no-cache"
    assert page.headers["cache-control"] == "no-cache"


@VIEWER_MISSING
def test_the_viewers_files_go_gzip_compressed_to_clients_that_take_gzip(
    served: ServeProcess,
) -> None:
    url = _viewer_url(served)
    page = httpx.get(url)
    bundle = re.search(r'src="/viewer/(app\.bundle\.[0-9a-f]{16,}\.js)"', page.text)
    assert bundle is not None, page.text
    installed = (default_dir() / bundle.group(1)).read_bytes()

    packed = httpx.get(url + bundle.group(1), headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["content-type"].startswith("text/javascript")
    assert packed.headers["vary"] == "Accept-Encoding"
    assert int(packed.headers["content-length"]) < len(installed) / 3
    assert packed.content == installed  # httpx undid the gzip: the same script

    for refusing in ("identity", "gzip;q=0", "br", ""):
        plain = httpx.get(url + bundle.group(1), headers={"Accept-Encoding": refusing})
        assert "content-encoding" not in plain.headers, refusing
        assert plain.headers["vary"] == "Accept-Encoding"
        assert int(plain.headers["content-length"]) == len(installed)
        assert plain.content == installed

    # The server's own files are never sent from a copy; a copy is not a file of its own.
    config = httpx.get(url + "app-config.js", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in config.headers
    assert config.content == (default_dir() / "app-config.js").read_bytes()
    copy = httpx.get(url + bundle.group(1) + ".gz", headers={"Accept-Encoding": "identity"})
    assert copy.status_code == 200
    assert copy.text == page.text


@VIEWER_MISSING
def test_the_viewers_page_tells_ohif_the_language_of_our_pages(served: ServeProcess) -> None:
    url = _viewer_url(served)
    cases = [
        # (the toggle's cookie, Accept-Language) -> OHIF's code
        (None, None, "zh"),  # Chinese first
        (None, "en-US,en;q=0.9", "en-US"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en", "zh-CN,zh;q=0.9", "en-US"),  # the toggle's choice wins
        ("zh", "en-US,en;q=0.9", "zh"),
    ]
    for chosen, accept, expected in cases:
        headers = {} if accept is None else {"Accept-Language": accept}
        cookies = {} if chosen is None else {"mrlang": chosen}
        for path in ("", "viewer?StudyInstanceUIDs=1.2.3", "index.html"):
            page = httpx.get(url + path, headers=headers, cookies=cookies)
            assert page.status_code == 200
            assert page.cookies.get("i18next") == expected, (chosen, accept, path)
            set_cookie = page.headers["set-cookie"].lower()
            assert "path=/;" in set_cookie or set_cookie.endswith("path=/")
            assert "samesite=strict" in set_cookie
            assert "httponly" not in set_cookie  # OHIF's script reads it
            assert page.headers["vary"] == "Accept-Language, Cookie"
    # The viewer's other files carry no cookie.
    page = httpx.get(url)
    bundle = re.search(r'src="/viewer/(app\.bundle\.[0-9a-f]{16,}\.js)"', page.text)
    assert bundle is not None, page.text
    assert "set-cookie" not in httpx.get(url + bundle.group(1)).headers
    assert "set-cookie" not in httpx.get(url + "app-config.js").headers


@CHROMIUM_MISSING
@VIEWER_MISSING
def test_the_ohif_app_shell_loads_in_chromium(served: ServeProcess, browser: Browser) -> None:
    url = _viewer_url(served)
    browser.driver.get(url)
    # The app rendered into its root: its header (the OHIF logo links home) and a page body.
    browser.wait_for(
        lambda driver: driver.execute_script(
            "const root = document.getElementById('root');"
            "return root && root.querySelectorAll('div').length > 10;"
        )
    )
    browser.screenshot("shell")
    assert browser.driver.execute_script("return window.config.name") == "mutualrec"
    assert browser.driver.current_url.startswith(url)

    # Every asset of the viewer loaded; DICOMweb's reads are another route's (their answer
    # here depends on the session, not on the viewer).
    origin = url.removesuffix("/viewer/")
    failed = [u for u in browser.failed_requests() if not u.startswith(f"{origin}/dicomweb")]
    assert failed == []
    assert browser.csp_violations() == []
