"""Thumbnails kept in the object store: rendered on first request, then served as stored.

The key is derived from the representative instance's content hash, so a thumbnail is never
stale: a new version of that instance, or a new middle instance, has another key. A series
whose images cannot be rendered keeps a small text object with the reason instead, so the decode
is not attempted again on every request.
"""

from __future__ import annotations

import contextlib
import io
import struct
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from mutualrec.imaging.records import InstanceFile
from mutualrec.imaging.thumbnails import (
    Thumbnail,
    placeholder_thumbnail,
    render_thumbnail,
    representative_index,
)
from mutualrec.storage.keys import thumbnail_keys
from mutualrec.storage.objects import ObjectNotFound, ObjectStore, ObjectStoreError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def representative(files: Sequence[InstanceFile]) -> InstanceFile:
    """The instance a series' thumbnail shows: the middle one by instance number."""
    return files[representative_index([f.instance_number for f in files])]


def _keys(instance: InstanceFile) -> tuple[str, str]:
    return thumbnail_keys(instance.series_instance_uid, instance.sha256)


def _read(store: ObjectStore, key: str) -> bytes | None:
    try:
        return b"".join(store.open(key))
    except ObjectNotFound:
        return None


def _png_size(png: bytes) -> tuple[int, int]:
    # IHDR is always the first chunk: width and height follow the signature and chunk header.
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


Renderer = Callable[[Path], Thumbnail]


def thumbnail_for(
    store: ObjectStore, instance: InstanceFile, scratch: Path, render: Renderer = render_thumbnail
) -> Thumbnail:
    """The stored thumbnail of ``instance``, rendering and storing it on first request.

    The instance is copied to a scratch file chunk by chunk, so rendering a frame of a large
    multi-frame object never holds the whole object in memory. ``render`` may hand the file to
    another process.
    """
    png_key, none_key = _keys(instance)
    png = _read(store, png_key)
    if png is not None and png.startswith(_PNG_SIGNATURE):
        width, height = _png_size(png)
        return Thumbnail(png, width, height, placeholder=False, reason="")
    reason = _read(store, none_key)
    if reason is not None:
        return placeholder_thumbnail(reason.decode("utf-8", "replace"))
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, suffix=".dcm") as copy:
        for chunk in store.open(instance.object_key):
            copy.write(chunk)
        copy.flush()
        thumbnail = render(Path(copy.name))
    if thumbnail.placeholder:
        body = thumbnail.reason.encode("utf-8")
        _put(store, none_key, body)
    else:
        _put(store, png_key, thumbnail.png)
    return thumbnail


def _put(store: ObjectStore, key: str, data: bytes) -> None:
    # A failed cache write costs a render next time, not this answer.
    with contextlib.suppress(OSError, ObjectStoreError):
        store.put(key, io.BytesIO(data), len(data))
        # A stored thumbnail is trusted as found (no index row vouches for it): it must not be
        # left torn by a crash, so it is made durable at once.
        store.sync()
