"""Files and directories only the service's own user may read.

The index, its write-ahead log, the objects and the secrets hold patients' data: another local
user must not read them whatever the umask of whoever started the server. Directories are 0700,
files 0600; an existing one owned by this user and open to others is tightened, one owned by
someone else is left as it is (it is not ours to change).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError, PermissionError):
        info = path.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(mode)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700, or tighten it if it exists."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    _tighten(path, DIRECTORY_MODE)
    return path


def new_private_dir(path: Path) -> None:
    """Create ``path`` as 0700 when it is missing; leave an existing one alone (a folder the
    operator chose, such as the one holding an SQLite file, may be shared with other things)."""
    if not path.exists():
        path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)


def private_file(path: Path) -> None:
    """Create ``path`` empty as 0600 when missing, or tighten it if it exists."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _tighten(path, FILE_MODE)


def tighten_file(path: Path) -> None:
    """Make an existing ``path`` 0600 if it is ours; nothing if it is missing."""
    _tighten(path, FILE_MODE)
