"""An object store whose FHIR originals are encrypted at rest, transparently to its users.

Kept FHIR documents carry residents' identity numbers, which the index never stores. Objects
under :data:`SEALED_PREFIXES` are sealed (:mod:`mutualrec.security.sealing`) on the way in and
opened on the way out, so every reader of an original (ingest, sweep, re-indexing, tests) gets
the bytes the hospital sent while the directory or bucket holds only ciphertext. Originals kept
before sealing existed are plain JSON and are read as they are. DICOM instances and thumbnails
pass through untouched (they are served byte for byte and streamed in ranges).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import BinaryIO

from mutualrec.security.sealing import Keyring, SealError, is_sealed, seal, unseal
from mutualrec.storage.objects import ObjectCorrupt, ObjectInfo, ObjectStore, ObjectStoreError

SEALED_PREFIXES = ("fhir/",)
_CHUNK = 1024 * 1024


class SealedDocuments:
    """``inner`` with the objects under :data:`SEALED_PREFIXES` encrypted at rest.

    A sealed object is read whole to be opened: FHIR documents are bounded by
    ``MUTUALREC_MAX_FHIR_MIB``. :meth:`stat` and :meth:`list` report the size held by the store.
    """

    def __init__(self, inner: ObjectStore, keyring: Keyring) -> None:
        self.inner = inner
        self._keyring = keyring
        self.description = f"{inner.description}, FHIR originals encrypted (AES-256-GCM)"

    @staticmethod
    def _sealed(key: str) -> bool:
        return key.startswith(SEALED_PREFIXES)

    def put(self, key: str, stream: BinaryIO, length: int) -> None:
        """Store ``length`` bytes of ``stream`` under ``key``, sealed if it is an original."""
        if not self._sealed(key):
            self.inner.put(key, stream, length)
            return
        data = stream.read(length)
        if len(data) != length:
            raise ObjectStoreError(f"stream for {key} ended {length - len(data)} bytes short")
        blob = seal(self._keyring, data)
        self.inner.put(key, io.BytesIO(blob), len(blob))

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The object's bytes (an original's plaintext) from ``offset``, in chunks."""
        if not self._sealed(key):
            return self.inner.open(key, offset, length)
        return self._open_sealed(key, offset, length)

    def _open_sealed(self, key: str, offset: int, length: int | None) -> Iterator[bytes]:
        blob = b"".join(self.inner.open(key))
        if is_sealed(blob):
            try:
                blob = unseal(self._keyring, blob)
            except SealError as exc:
                raise ObjectCorrupt(f"{key}: {exc}") from None
        end = len(blob) if length is None else min(len(blob), offset + length)
        for start in range(offset, end, _CHUNK):
            yield blob[start : min(end, start + _CHUNK)]

    def stat(self, key: str) -> ObjectInfo:
        """What the store holds under ``key`` (for an original, the sealed size)."""
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        """Remove the object."""
        self.inner.delete(key)

    def sync(self) -> None:
        """Make the objects put so far durable."""
        self.inner.sync()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``."""
        return self.inner.list(prefix)

    def remove_stale_temporaries(self, before: dt.datetime) -> int:
        """Remove what interrupted writes left behind."""
        return self.inner.remove_stale_temporaries(before)
