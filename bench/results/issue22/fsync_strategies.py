"""Time the ways to make a batch of files durable (issue 22, group durability).

Usage: python fsync_strategies.py DIR [FILES_PER_BATCH] [ROUNDS]; DIR on the filesystem of
the object store. Prints the median time per batch of each strategy (fsync_strategies.txt).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LIBC = ctypes.CDLL(None, use_errno=True)
SYNC_FILE_RANGE_WRITE = 2
SIZE = 526_000  # one CT instance of the ingest benchmark
DATA = os.urandom(SIZE)
POOL = ThreadPoolExecutor(8)


def write_files(directory: Path, count: int, *, fsync_each: bool) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = directory / f"f{n}"
        with path.open("wb") as out:
            out.write(DATA)
            if fsync_each:
                out.flush()
                os.fsync(out.fileno())
        paths.append(path)
    return paths


def fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fsync_path(directory, os.O_RDONLY | os.O_DIRECTORY)


def each(directory: Path, count: int) -> None:
    """Before issue 22: fsync every file as it is written."""
    write_files(directory, count, fsync_each=True)
    fsync_dir(directory)


def syncfs(directory: Path, count: int) -> None:
    write_files(directory, count, fsync_each=False)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if LIBC.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
    finally:
        os.close(fd)
    fsync_dir(directory)


def sequential(directory: Path, count: int) -> None:
    for path in write_files(directory, count, fsync_each=False):
        fsync_path(path)
    fsync_dir(directory)


def write_back_first(directory: Path, count: int) -> None:
    """Issue 22's choice: start each file's write-back, then fsync each."""
    paths = write_files(directory, count, fsync_each=False)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        LIBC.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), SYNC_FILE_RANGE_WRITE)
        os.close(fd)
    for path in paths:
        fsync_path(path)
    fsync_dir(directory)


def parallel(directory: Path, count: int) -> None:
    list(POOL.map(fsync_path, write_files(directory, count, fsync_each=False)))
    fsync_dir(directory)


STRATEGIES: dict[str, Callable[[Path, int], None]] = {
    "each": each,
    "syncfs": syncfs,
    "seq": sequential,
    "sfr": write_back_first,
    "par": parallel,
}


def main() -> None:
    root = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    times: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    for n in range(rounds):
        for name, strategy in STRATEGIES.items():
            directory = root / f"{name}{n}"
            start = time.perf_counter()
            strategy(directory, count)
            times[name].append(time.perf_counter() - start)
            shutil.rmtree(directory)
    for name, values in times.items():
        median = statistics.median(values) * 1000
        print(f"{name:7s} median {median:8.1f} ms per {count} files ({median / count:.2f} ms/file)")


if __name__ == "__main__":
    main()
