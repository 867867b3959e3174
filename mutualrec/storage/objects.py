"""The object-store interface: as small as Orthanc's storage area.

Blobs (original DICOM instances, FHIR JSON, thumbnails) live behind this interface; the SQL index
only refers to them by key. Every method is blocking: async callers run them in a worker thread.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

# Keys are built by the server from validated UIDs and hashes, never taken from a client, but the
# backends still refuse anything that could escape the store's root or mean different things on
# a filesystem and in S3.
_KEY_SHAPE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class ObjectNotFound(KeyError):
    """No object under that key."""


class ObjectStoreError(RuntimeError):
    """The store could not carry out an operation (I/O error, S3 error)."""


class ObjectCorrupt(ObjectStoreError):
    """An object's bytes no longer match the hash the index recorded for them."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the store knows of an object without reading it."""

    key: str
    size: int
    # When the object was last written (UTC), where the backend says.
    modified: dt.datetime | None = None


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ``ValueError``."""
    if not _KEY_SHAPE.match(key) or any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"not a valid object key: {key!r}")
    return key


class ObjectStore(Protocol):
    """A flat namespace of immutable blobs addressed by ``/``-separated keys."""

    description: str

    def put(self, key: str, stream: BinaryIO, length: int) -> None:
        """Store ``length`` bytes read from ``stream`` under ``key``, atomically.

        Readers see the old object or the whole new one, never a part.
        """

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the object's bytes from ``offset`` (``length`` bytes, or to the end) in chunks."""

    def stat(self, key: str) -> ObjectInfo:
        """Size of the object; raises :class:`ObjectNotFound`."""

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def sync(self) -> None:
        """Make every object put so far survive a machine crash (called before indexing them)."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (order depends on the backend)."""

    def remove_stale_temporaries(self, before: dt.datetime) -> int:
        """Remove what interrupted writes left behind before ``before``; how many were removed."""
