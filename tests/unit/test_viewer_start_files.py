"""What the history page asks the browser to fetch ahead of a click into the viewer, read from
the installed viewer's ``index.html`` (made-up folders here), and the pages' policy that lets
it: default-src 'self' for the prefetch, every other fetch directive spelled out."""

from __future__ import annotations

from pathlib import Path

from mutualrec.http.headers import PAGE_POLICY, headers_for
from mutualrec.http.viewer import start_files
from mutualrec.viewer_install import rewrite_index

BUNDLE = "app.bundle.0f6159c501addfe9.js"
DIST_INDEX = (
    '<!doctype html><html><head><link rel="manifest" href="/manifest.json">'
    '<link rel="icon" href="/assets/favicon.ico"><script>window.PUBLIC_URL="/"</script>'
    '<script rel="preload" as="script" src="/app-config.js"></script><title>OHIF</title>'
    f'<script defer src="/{BUNDLE}"></script><link href="/app.bundle.css" rel="stylesheet">'
    '<script src="https://cdn.example/x.js"></script></head><body></body></html>'
)


def test_the_start_files_are_the_indexs_scripts_and_style_sheets_a_browser_keeps(
    tmp_path: Path,
) -> None:
    (tmp_path / "index.html").write_text(rewrite_index(DIST_INDEX), encoding="utf-8")
    # The server's own files (configuration, boot script) are always revalidated: left out;
    # so are icons, manifests and anything of another origin.
    assert start_files(tmp_path) == (f"/viewer/{BUNDLE}", "/viewer/app.bundle.css")


def test_no_viewer_no_start_files() -> None:
    assert start_files(None) == ()


def directives(policy: bytes) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in policy.decode().split(";"))
    return {name: value for name, value in parts}


def test_the_pages_policy_allows_only_this_site_and_nothing_it_does_not_use() -> None:
    policy = directives(PAGE_POLICY)
    # A prefetch's effective directive is default-src: this site only.
    assert policy["default-src"] == "'self'"
    # Every other directive falling back to default-src is explicit, so none gains from it.
    for unused in ("font-src", "media-src", "frame-src", "child-src", "worker-src"):
        assert policy[unused] == "'none'", unused
    assert policy["manifest-src"] == "'none'"
    assert policy["object-src"] == "'none'"
    for used in ("script-src", "style-src", "connect-src"):
        assert policy[used] == "'self'", used
    assert policy["img-src"] == "'self' data:"
    assert "unsafe" not in PAGE_POLICY.decode()
    assert dict(headers_for("/"))[b"content-security-policy"] == PAGE_POLICY
