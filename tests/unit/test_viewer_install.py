"""The viewer installer's checks and rewrites, on small made-up inputs (no network)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from mutualrec.viewer_install import (
    APP_CONFIG,
    BOOT_SCRIPT,
    INSTALLED_MARK,
    check_integrity,
    compress_release,
    extract_dist,
    install,
    rewrite_index,
)

INDEX = (
    '<html><head><script>console.time("x"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><script src="/app-config.js"></script>'
    '<script type="module" src="/init-service-worker.js"></script><title>OHIF</title>'
    '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
    '<script defer src="/app.bundle.1.js"></script><a href="//cdn.example/x">x</a></head></html>'
)


def test_the_index_moves_under_viewer_without_inline_scripts() -> None:
    html = rewrite_index(INDEX)
    assert "<script>" not in html
    assert "init-service-worker" not in html
    assert 'href="/viewer/manifest.json"' in html
    assert 'src="/viewer/app-config.js"' in html
    assert f'<script src="/viewer/{BOOT_SCRIPT}"></script><title>' in html
    assert 'src="/viewer/app.bundle.1.js"' in html
    assert 'href="//cdn.example/x"' in html  # not a root path


def test_integrity_is_checked() -> None:
    data = b"tarball bytes"
    good = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    check_integrity(data, good)
    with pytest.raises(ValueError, match="sha512"):
        check_integrity(data + b"!", good)
    with pytest.raises(ValueError, match="algorithm"):
        check_integrity(data, "sha1-abc")


def _tarball(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            archive.addfile(info, io.BytesIO(b"ok"))
    return path


def test_only_dist_is_extracted_and_nothing_outside(tmp_path: Path) -> None:
    tarball = _tarball(
        tmp_path / "a.tgz",
        ["package/package.json", "package/dist/index.html", "package/dist/a/b.js"],
    )
    extract_dist(tarball, tmp_path / "out")
    assert sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")
    ) == [
        "a/b.js",
        "index.html",
    ]
    evil = _tarball(tmp_path / "evil.tgz", ["package/dist/../../escaped.txt"])
    with pytest.raises(ValueError, match="unsafe"):
        extract_dist(evil, tmp_path / "evil")
    assert not (tmp_path / "escaped.txt").exists()


def test_an_installed_viewer_is_kept_and_given_this_codes_configuration(tmp_path: Path) -> None:
    (tmp_path / INSTALLED_MARK).write_text("@ohif/app@3.13.2\n")
    (tmp_path / "app.bundle.1.js").write_text("the viewer")
    (tmp_path / "app-config.js").write_text("window.config = {customizationService: {}};")

    assert install(tmp_path) is False  # nothing fetched: the marked install stays
    assert (tmp_path / "app.bundle.1.js").read_text() == "the viewer"
    config = (tmp_path / "app-config.js").read_text()
    assert config == APP_CONFIG
    assert "'ohif.tours': { $set: [] }" in config
    assert (tmp_path / BOOT_SCRIPT).read_text().startswith("function browserImportFunction")


def test_the_releases_files_get_gzip_copies_once_and_ours_none(tmp_path: Path) -> None:
    script = b"function f() { return 'viewer'; }\n" * 2_000
    (tmp_path / "assets").mkdir()
    files = {
        "app.bundle.0123456789abcdef.js": script,
        "app.bundle.css": b".a { color: red; }\n" * 500,
        "assets/codec.wasm": b"\x00asm" + b"\x01\x00" * 4_000,
        "app-config.js": script,  # ours: rewritten by every install
        BOOT_SCRIPT: script,
        "index.html": b"<html>" * 1_000,  # ours, and a page
        "logo.png": b"\x89PNG" * 1_000,  # compressed already
        "noise.js": os.urandom(4_000),  # would not shrink
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    assert compress_release(tmp_path) == 3
    copies = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.gz"))
    assert copies == [
        "app.bundle.0123456789abcdef.js.gz",
        "app.bundle.css.gz",
        "assets/codec.wasm.gz",
    ]
    for copy in copies:
        assert gzip.decompress((tmp_path / copy).read_bytes()) == files[copy.removesuffix(".gz")]
    assert not list(tmp_path.rglob("*.part"))

    # Again: nothing to do; a copy is never redone (nor a copy of a copy made).
    before = (tmp_path / copies[0]).stat().st_mtime_ns
    assert compress_release(tmp_path) == 0
    assert (tmp_path / copies[0]).stat().st_mtime_ns == before
