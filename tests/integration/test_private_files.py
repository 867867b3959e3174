"""The embedded deployment's data is readable by the service's own user only.

Run under a permissive umask (0022, the usual one) so the modes come from the service, not from
the test's environment.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mutualrec.config import load_settings
from mutualrec.runtime import Runtime
from mutualrec.storage.institutions import add_institution


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run_embedded(data_dir: Path) -> None:
    """Start the embedded default on ``data_dir``, write to the index, stop."""
    settings = load_settings(
        {
            "MUTUALREC_DATA_DIR": str(data_dir),
            "MUTUALREC_PARSE_WORKERS": "0",
            "MUTUALREC_LISTEN": "127.0.0.1:0",
        }
    )
    runtime = Runtime.open(settings)
    try:
        with runtime.sessions.begin() as session:
            add_institution(session, "H1", "Hospital 1", "Yuzhong", "tertiary")
        # The write-ahead log exists while the server runs: look at it now.
        assert _mode(data_dir / "index.sqlite3-wal") == 0o600
        assert _mode(data_dir / "index.sqlite3-shm") == 0o600
    finally:
        runtime.close()


def _modes(data_dir: Path) -> dict[str, int]:
    return {
        name: _mode(data_dir / name)
        for name in ("", "index.sqlite3", "objects", "patient-key.secret")
    }


def test_a_new_data_directory_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    _run_embedded(data_dir)
    assert _modes(data_dir) == {
        "": 0o700,
        "index.sqlite3": 0o600,
        "objects": 0o700,
        "patient-key.secret": 0o600,
    }


def test_an_existing_world_readable_data_directory_is_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    (data_dir / "objects").mkdir(mode=0o755)
    (data_dir / "index.sqlite3").touch(mode=0o644)
    (data_dir / "patient-key.secret").write_text("a" * 64)
    (data_dir / "patient-key.secret").chmod(0o644)
    _run_embedded(data_dir)
    assert _modes(data_dir) == {
        "": 0o700,
        "index.sqlite3": 0o600,
        "objects": 0o700,
        "patient-key.secret": 0o600,
    }
