"""Object store on a local directory: the embedded default."""

from __future__ import annotations

import datetime as dt
import errno
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mutualrec.private_files import private_dir
from mutualrec.storage.objects import ObjectInfo, ObjectNotFound, ObjectStoreError, check_key

_COPY_CHUNK = 1024 * 1024
_TMP_DIR = ".tmp"


class FileSystemObjectStore:
    """Objects as files below ``root``; a key's ``/`` separates directories.

    Writes go to a temporary file under ``root/.tmp`` and are renamed into place, so a crash
    leaves only a temporary file, never a half-written object under its key.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self.description = f"directory {root}"
        # The root is 0700, so no other local user reaches any object below it.
        private_dir(root)
        (root / _TMP_DIR).mkdir(parents=True, exist_ok=True)
        # Directories whose entries changed since the last sync(): a renamed file or a new
        # directory is durable only once its parent directory is fsynced.
        self._unsynced_dirs: set[Path] = set()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, stream: BinaryIO, length: int) -> None:
        """Store ``length`` bytes of ``stream`` under ``key``, atomically."""
        target = self._path(key)
        fd, tmp_name = tempfile.mkstemp(dir=self.root / _TMP_DIR)
        try:
            with os.fdopen(fd, "wb") as out:
                remaining = length
                while remaining > 0:
                    block = stream.read(min(_COPY_CHUNK, remaining))
                    if not block:
                        raise ObjectStoreError(
                            f"stream for {key} ended {remaining} bytes short of {length}"
                        )
                    out.write(block)
                    remaining -= len(block)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            changed = self._make_parents(target.parent)
            os.replace(tmp_name, target)
            changed.append(target.parent)
            if self.fsync:
                with self._lock:
                    self._unsynced_dirs.update(changed)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def _make_parents(self, directory: Path) -> list[Path]:
        """Create ``directory`` and its missing parents; return the directories that changed."""
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
        return [new.parent for new in missing]

    def sync(self) -> None:
        """fsync every directory changed by put() since the last call."""
        with self._lock:
            directories, self._unsynced_dirs = self._unsynced_dirs, set()
        for directory in directories:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the object's bytes from ``offset``, ``length`` of them or to the end."""
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        return self._read(handle, offset, length)

    @staticmethod
    def _read(handle: BinaryIO, offset: int, length: int | None) -> Iterator[bytes]:
        with handle:
            handle.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = _COPY_CHUNK if remaining is None else min(_COPY_CHUNK, remaining)
                block = handle.read(size)
                if not block:
                    return
                if remaining is not None:
                    remaining -= len(block)
                yield block

    def stat(self, key: str) -> ObjectInfo:
        """Size of the object under ``key``."""
        try:
            return _info(key, self._path(key).stat())
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def delete(self, key: str) -> None:
        """Remove the object and the directories it leaves empty."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    break
                raise

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, sorted within each directory."""
        # Walk only the deepest directory the prefix names, not the whole store.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            if Path(dirpath) == self.root and _TMP_DIR in dirnames:
                dirnames.remove(_TMP_DIR)
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            entries = []
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    entries.append(key)
            for key in sorted(entries):
                try:
                    status = (self.root / key).stat()
                except FileNotFoundError:
                    continue  # deleted while the directory was being listed
                yield _info(key, status)

    def remove_stale_temporaries(self, before: dt.datetime) -> int:
        """Delete temporary files (writes a crash cut short) last written before ``before``."""
        removed = 0
        for entry in os.scandir(self.root / _TMP_DIR):
            try:
                written = dt.datetime.fromtimestamp(entry.stat().st_mtime, dt.UTC)
                if entry.is_file() and written < before:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # renamed into place, or removed, meanwhile
        return removed


def _info(key: str, status: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key, status.st_size, dt.datetime.fromtimestamp(status.st_mtime, dt.UTC))
